import type { MigrationInterface, QueryRunner } from 'typeorm';

/** SQLite: jobs (persisted state machine with leases), site sessions, blob provenance. */
export class FederationSqlite1764892800000 implements MigrationInterface {
  name = 'FederationSqlite1764892800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "jobs" (
        "id" varchar(36) NOT NULL,
        "site_id" varchar(36) NOT NULL,
        "kind" varchar(64) NOT NULL,
        "payload" text NOT NULL,
        "inputs" text NOT NULL,
        "state" varchar(16) NOT NULL,
        "attempt" integer NOT NULL,
        "max_attempts" integer NOT NULL,
        "lease_expires_at" datetime,
        "progress" text,
        "result" text,
        "error" text,
        "study_id" varchar(128),
        "round_id" varchar(128),
        "created_at" datetime NOT NULL,
        "updated_at" datetime NOT NULL,
        "started_at" datetime,
        "finished_at" datetime,
        CONSTRAINT "PK_jobs" PRIMARY KEY ("id"),
        CONSTRAINT "CHK_jobs_state" CHECK (
          "state" IN ('queued', 'assigned', 'running', 'uploading', 'done', 'failed')),
        CONSTRAINT "CHK_jobs_attempt" CHECK ("attempt" >= 1 AND "attempt" <= "max_attempts"),
        CONSTRAINT "CHK_jobs_active_has_lease" CHECK (
          "state" NOT IN ('assigned', 'running', 'uploading') OR "lease_expires_at" IS NOT NULL),
        CONSTRAINT "CHK_jobs_done_has_result" CHECK ("state" <> 'done' OR "result" IS NOT NULL),
        CONSTRAINT "FK_jobs_site" FOREIGN KEY ("site_id") REFERENCES "sites" ("id")
      )`);
    await q.query(`CREATE INDEX "IDX_jobs_site_state" ON "jobs" ("site_id", "state")`);
    await q.query(`CREATE INDEX "IDX_jobs_state_lease" ON "jobs" ("state", "lease_expires_at")`);
    await q.query(`CREATE INDEX "IDX_jobs_study_round" ON "jobs" ("study_id", "round_id")`);
    await q.query(`
      CREATE TABLE "site_sessions" (
        "id" varchar(36) NOT NULL,
        "site_id" varchar(36) NOT NULL,
        "socket_id" varchar(64) NOT NULL,
        "connected_at" datetime NOT NULL,
        "hello_at" datetime NOT NULL,
        "disconnected_at" datetime,
        "disconnect_reason" varchar(200),
        "protocol_version" integer NOT NULL,
        "agent_version" varchar(64) NOT NULL,
        "capabilities" text NOT NULL,
        "dataset" text NOT NULL,
        "remote_address" varchar(64),
        CONSTRAINT "PK_site_sessions" PRIMARY KEY ("id"),
        CONSTRAINT "FK_site_sessions_site" FOREIGN KEY ("site_id") REFERENCES "sites" ("id")
      )`);
    await q.query(`CREATE INDEX "IDX_site_sessions_site_hello" ON "site_sessions" ("site_id", "hello_at")`);
    await q.query(`
      CREATE TABLE "blobs" (
        "id" varchar(36) NOT NULL,
        "sha256" varchar(64) NOT NULL,
        "size" bigint NOT NULL,
        "kind" varchar(32) NOT NULL,
        "site_id" varchar(36),
        "job_id" varchar(36),
        "transfer_id" varchar(64),
        "role" varchar(64),
        "meta" text NOT NULL,
        "created_at" datetime NOT NULL,
        CONSTRAINT "PK_blobs" PRIMARY KEY ("id"),
        CONSTRAINT "UQ_blobs_site_transfer" UNIQUE ("site_id", "transfer_id"),
        CONSTRAINT "CHK_blobs_sha256" CHECK (length("sha256") = 64),
        CONSTRAINT "CHK_blobs_size" CHECK ("size" >= 0),
        CONSTRAINT "FK_blobs_site" FOREIGN KEY ("site_id") REFERENCES "sites" ("id"),
        CONSTRAINT "FK_blobs_job" FOREIGN KEY ("job_id") REFERENCES "jobs" ("id") ON DELETE SET NULL
      )`);
    await q.query(`CREATE INDEX "IDX_blobs_sha256" ON "blobs" ("sha256")`);
    await q.query(`CREATE INDEX "IDX_blobs_job_id" ON "blobs" ("job_id")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_blobs_job_id"`);
    await q.query(`DROP INDEX "IDX_blobs_sha256"`);
    await q.query(`DROP TABLE "blobs"`);
    await q.query(`DROP INDEX "IDX_site_sessions_site_hello"`);
    await q.query(`DROP TABLE "site_sessions"`);
    await q.query(`DROP INDEX "IDX_jobs_study_round"`);
    await q.query(`DROP INDEX "IDX_jobs_state_lease"`);
    await q.query(`DROP INDEX "IDX_jobs_site_state"`);
    await q.query(`DROP TABLE "jobs"`);
  }
}
