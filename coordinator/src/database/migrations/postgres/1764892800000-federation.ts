import type { MigrationInterface, QueryRunner } from 'typeorm';

/** PostgreSQL: jobs (persisted state machine with leases), site sessions, blob provenance. Unqualified names. */
export class FederationPostgres1764892800000 implements MigrationInterface {
  name = 'FederationPostgres1764892800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "jobs" (
        "id" uuid NOT NULL,
        "site_id" uuid NOT NULL,
        "kind" varchar(64) NOT NULL,
        "payload" text NOT NULL,
        "inputs" text NOT NULL,
        "state" varchar(16) NOT NULL,
        "attempt" integer NOT NULL,
        "max_attempts" integer NOT NULL,
        "lease_expires_at" timestamptz,
        "progress" text,
        "result" text,
        "error" text,
        "study_id" varchar(128),
        "round_id" varchar(128),
        "created_at" timestamptz NOT NULL,
        "updated_at" timestamptz NOT NULL,
        "started_at" timestamptz,
        "finished_at" timestamptz,
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
        "id" uuid NOT NULL,
        "site_id" uuid NOT NULL,
        "socket_id" varchar(64) NOT NULL,
        "connected_at" timestamptz NOT NULL,
        "hello_at" timestamptz NOT NULL,
        "disconnected_at" timestamptz,
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
        "id" uuid NOT NULL,
        "sha256" varchar(64) NOT NULL,
        "size" bigint NOT NULL,
        "kind" varchar(32) NOT NULL,
        "site_id" uuid,
        "job_id" uuid,
        "transfer_id" varchar(64),
        "role" varchar(64),
        "meta" text NOT NULL,
        "created_at" timestamptz NOT NULL,
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
    await q.query(`DROP TABLE "blobs"`);
    await q.query(`DROP TABLE "site_sessions"`);
    await q.query(`DROP TABLE "jobs"`);
  }
}
