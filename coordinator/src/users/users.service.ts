import { BadRequestException, ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { PasswordHasher } from '../auth/password-hasher.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { isUniqueViolation } from '../database/unique-violation.js';
import { CreateUserBody } from './users.schemas.js';
import { User } from './user.entity.js';

/** Human accounts: creation (REST and CLI), lookup, password check, disabling. */
@Injectable()
export class UsersService {
  constructor(
    @InjectRepository(User) private readonly users: Repository<User>,
    private readonly hasher: PasswordHasher,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  /** Validates (username, role, password policy) and stores a new user; 409 if the username is taken. */
  async create(input: { username: string; role: string; password: string }): Promise<User> {
    const parsed = CreateUserBody.safeParse(input);
    if (!parsed.success) throw new BadRequestException(parsed.error.issues.map((i) => i.message));
    const { username, role, password } = parsed.data;
    if (await this.users.existsBy({ username }))
      throw new ConflictException(`user ${username} already exists`);
    const user = this.users.create({
      id: this.random.uuid(),
      username,
      role,
      passwordHash: await this.hasher.hash(password),
      disabled: false,
      createdAt: this.clock.now(),
    });
    try {
      return await this.users.save(user);
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConflictException(`user ${username} already exists`);
      throw error;
    }
  }

  list(): Promise<User[]> {
    return this.users.find({ order: { username: 'ASC' } });
  }

  findById(id: string): Promise<User | null> {
    return this.users.findOneBy({ id });
  }

  findByUsername(username: string): Promise<User | null> {
    return this.users.findOneBy({ username: username.trim().toLowerCase() });
  }

  /**
   * The enabled user with this username and password, or null. Unknown users cost the same scrypt time as a
   * wrong password, so response times do not reveal which usernames exist.
   */
  async authenticate(username: string, password: string): Promise<User | null> {
    const user = await this.findByUsername(username);
    if (!user) {
      await this.hasher.burn(password);
      return null;
    }
    const ok = await this.hasher.verify(password, user.passwordHash);
    return ok && !user.disabled ? user : null;
  }

  async setDisabled(id: string, disabled: boolean): Promise<User> {
    const user = await this.findById(id);
    if (!user) throw new NotFoundException(`no user ${id}`);
    user.disabled = disabled;
    return this.users.save(user);
  }
}
