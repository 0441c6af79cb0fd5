import type { MigrationInterface, QueryRunner } from 'typeorm';

/** PostgreSQL: studies (FedAvg / local training rounds), their rounds, and the provenance of pooled samples. */
export class StudiesPostgres1765000000000 implements MigrationInterface {
  name = 'StudiesPostgres1765000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "studies" (
        "id" uuid NOT NULL,
        "name" varchar(128) NOT NULL,
        "model" text NOT NULL,
        "mode" varchar(16) NOT NULL,
        "rounds" integer NOT NULL,
        "local_steps" integer NOT NULL,
        "batch_size" integer NOT NULL,
        "samples_per_site" integer NOT NULL,
        "min_sites" integer NOT NULL,
        "round_timeout_ms" bigint NOT NULL,
        "max_seconds" double precision,
        "site_ids" text NOT NULL,
        "seed" integer NOT NULL,
        "truncation_psi" double precision NOT NULL,
        "ddim_steps" integer NOT NULL,
        "data" text,
        "synthetic_pool_sha256" varchar(64),
        "state" varchar(16) NOT NULL,
        "current_round" integer NOT NULL,
        "sampling_site_ids" text,
        "model_sha256" varchar(64),
        "error" text,
        "created_by" uuid,
        "created_at" timestamptz NOT NULL,
        "updated_at" timestamptz NOT NULL,
        "finished_at" timestamptz,
        CONSTRAINT "PK_studies" PRIMARY KEY ("id"),
        CONSTRAINT "CHK_studies_state" CHECK ("state" IN ('running', 'sampling', 'done', 'failed', 'cancelled')),
        CONSTRAINT "CHK_studies_mode" CHECK ("mode" IN ('fedavg', 'local')),
        CONSTRAINT "CHK_studies_rounds" CHECK ("rounds" >= 1 AND "current_round" >= 0 AND "current_round" <= "rounds"),
        CONSTRAINT "CHK_studies_min_sites" CHECK ("min_sites" >= 1),
        CONSTRAINT "CHK_studies_samples" CHECK ("samples_per_site" >= 0),
        CONSTRAINT "FK_studies_created_by" FOREIGN KEY ("created_by") REFERENCES "users" ("id") ON DELETE SET NULL
      )`);
    await q.query(`CREATE INDEX "IDX_studies_state" ON "studies" ("state")`);
    await q.query(`
      CREATE TABLE "study_rounds" (
        "id" uuid NOT NULL,
        "study_id" uuid NOT NULL,
        "round_index" integer NOT NULL,
        "state" varchar(16) NOT NULL,
        "started_at" timestamptz NOT NULL,
        "deadline" timestamptz NOT NULL,
        "closed_at" timestamptz,
        "participants" text NOT NULL,
        "contributors" text NOT NULL,
        "input_weights_sha256" varchar(64),
        "input_ema_sha256" varchar(64),
        "output_weights_sha256" varchar(64),
        "output_ema_sha256" varchar(64),
        "contributions" text NOT NULL,
        CONSTRAINT "PK_study_rounds" PRIMARY KEY ("id"),
        CONSTRAINT "UQ_study_rounds_study_index" UNIQUE ("study_id", "round_index"),
        CONSTRAINT "CHK_study_rounds_state" CHECK ("state" IN ('open', 'done')),
        CONSTRAINT "CHK_study_rounds_index" CHECK ("round_index" >= 0),
        CONSTRAINT "FK_study_rounds_study" FOREIGN KEY ("study_id") REFERENCES "studies" ("id") ON DELETE CASCADE
      )`);
    await q.query(`
      CREATE TABLE "pool_samples" (
        "id" uuid NOT NULL,
        "study_id" uuid NOT NULL,
        "site_id" uuid NOT NULL,
        "job_id" uuid NOT NULL,
        "sha256" varchar(64) NOT NULL,
        "size" bigint NOT NULL,
        "count" integer NOT NULL,
        "generator" varchar(32) NOT NULL,
        "seed" integer NOT NULL,
        "round_index" integer NOT NULL,
        "created_at" timestamptz NOT NULL,
        CONSTRAINT "PK_pool_samples" PRIMARY KEY ("id"),
        CONSTRAINT "UQ_pool_samples_study_site" UNIQUE ("study_id", "site_id"),
        CONSTRAINT "CHK_pool_samples_sha256" CHECK (length("sha256") = 64),
        CONSTRAINT "CHK_pool_samples_count" CHECK ("count" >= 0),
        CONSTRAINT "FK_pool_samples_study" FOREIGN KEY ("study_id") REFERENCES "studies" ("id") ON DELETE CASCADE,
        CONSTRAINT "FK_pool_samples_site" FOREIGN KEY ("site_id") REFERENCES "sites" ("id"),
        CONSTRAINT "FK_pool_samples_job" FOREIGN KEY ("job_id") REFERENCES "jobs" ("id")
      )`);
    await q.query(`CREATE INDEX "IDX_pool_samples_sha256" ON "pool_samples" ("sha256")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_pool_samples_sha256"`);
    await q.query(`DROP TABLE "pool_samples"`);
    await q.query(`DROP TABLE "study_rounds"`);
    await q.query(`DROP INDEX "IDX_studies_state"`);
    await q.query(`DROP TABLE "studies"`);
  }
}
