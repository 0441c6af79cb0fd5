import type { MigrationInterface, QueryRunner } from 'typeorm';

/** SQLite: users, sites and enrolment tokens. */
export class InitialSchemaSqlite1764115200000 implements MigrationInterface {
  name = 'InitialSchemaSqlite1764115200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "users" (
        "id" varchar(36) NOT NULL,
        "username" varchar(64) NOT NULL,
        "password_hash" varchar(255) NOT NULL,
        "role" varchar(16) NOT NULL,
        "disabled" boolean NOT NULL DEFAULT (0),
        "created_at" datetime NOT NULL,
        CONSTRAINT "PK_users" PRIMARY KEY ("id"),
        CONSTRAINT "UQ_users_username" UNIQUE ("username"),
        CONSTRAINT "CHK_users_role" CHECK ("role" IN ('admin', 'auditor', 'researcher'))
      )`);
    await q.query(`
      CREATE TABLE "sites" (
        "id" varchar(36) NOT NULL,
        "name" varchar(64) NOT NULL,
        "status" varchar(16) NOT NULL,
        "public_jwk" text,
        "kid" varchar(64),
        "created_at" datetime NOT NULL,
        "created_by" varchar(36),
        "enrolled_at" datetime,
        "revoked_at" datetime,
        "last_seen_at" datetime,
        CONSTRAINT "PK_sites" PRIMARY KEY ("id"),
        CONSTRAINT "UQ_sites_name" UNIQUE ("name"),
        CONSTRAINT "UQ_sites_kid" UNIQUE ("kid"),
        CONSTRAINT "CHK_sites_status" CHECK ("status" IN ('pending', 'active', 'revoked')),
        CONSTRAINT "CHK_sites_active_has_key" CHECK (
          "status" <> 'active' OR ("kid" IS NOT NULL AND "public_jwk" IS NOT NULL AND "enrolled_at" IS NOT NULL)),
        CONSTRAINT "CHK_sites_revoked_at" CHECK ("status" <> 'revoked' OR "revoked_at" IS NOT NULL),
        CONSTRAINT "FK_sites_created_by" FOREIGN KEY ("created_by") REFERENCES "users" ("id") ON DELETE SET NULL
      )`);
    await q.query(`
      CREATE TABLE "enrollment_tokens" (
        "id" varchar(36) NOT NULL,
        "token_hash" varchar(64) NOT NULL,
        "site_id" varchar(36) NOT NULL,
        "created_at" datetime NOT NULL,
        "expires_at" datetime NOT NULL,
        "used_at" datetime,
        CONSTRAINT "PK_enrollment_tokens" PRIMARY KEY ("id"),
        CONSTRAINT "UQ_enrollment_tokens_token_hash" UNIQUE ("token_hash"),
        CONSTRAINT "FK_enrollment_tokens_site" FOREIGN KEY ("site_id") REFERENCES "sites" ("id") ON DELETE CASCADE
      )`);
    await q.query(`CREATE INDEX "IDX_enrollment_tokens_site_id" ON "enrollment_tokens" ("site_id")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_enrollment_tokens_site_id"`);
    await q.query(`DROP TABLE "enrollment_tokens"`);
    await q.query(`DROP TABLE "sites"`);
    await q.query(`DROP TABLE "users"`);
  }
}
