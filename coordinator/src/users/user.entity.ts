import { Column, Entity, PrimaryColumn } from 'typeorm';
import type { Role } from './role.js';

/** A human account. The schema is defined by the migrations in database/migrations (synchronize is off). */
@Entity({ name: 'users' })
export class User {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ type: 'varchar', length: 64, unique: true })
  username!: string;

  /** `scrypt$<logN>$<r>$<p>$<salt b64url>$<hash b64url>`; never leaves the service. */
  @Column({ name: 'password_hash', type: 'varchar', length: 255 })
  passwordHash!: string;

  @Column({ type: 'varchar', length: 16 })
  role!: Role;

  @Column({ type: 'boolean', default: false })
  disabled!: boolean;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;
}

/** What the API shows of a user. */
export interface UserView {
  id: string;
  username: string;
  role: Role;
  disabled: boolean;
  createdAt: string;
}

export function toUserView(user: User): UserView {
  return {
    id: user.id,
    username: user.username,
    role: user.role,
    disabled: user.disabled,
    createdAt: user.createdAt.toISOString(),
  };
}
