import type { MigrationInterface, QueryRunner } from 'typeorm';

/** PostgreSQL: central segmenter runs, federated evaluations and the utility (paper comparison) runs. */
export class EvaluationsPostgres1765200000000 implements MigrationInterface {
  name = 'EvaluationsPostgres1765200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "segmenter_runs" (
        "id" uuid NOT NULL,
        "study_id" varchar(64) NOT NULL,
        "model" varchar(16) NOT NULL,
        "profile" varchar(16) NOT NULL,
        "steps" integer NOT NULL,
        "batch_size" integer NOT NULL,
        "trained_on" varchar(32) NOT NULL,
        "state" varchar(16) NOT NULL,
        "pool_sha256" varchar(64),
        "pool_slices" integer,
        "weights_sha256" varchar(64),
        "final_loss" double precision,
        "seconds" double precision,
        "error" text,
        "created_at" timestamptz NOT NULL,
        "started_at" timestamptz,
        "finished_at" timestamptz,
        CONSTRAINT "PK_segmenter_runs" PRIMARY KEY ("id"),
        CONSTRAINT "CHK_segmenter_runs_state" CHECK ("state" IN ('queued', 'training', 'done', 'failed')),
        CONSTRAINT "CHK_segmenter_runs_model" CHECK ("model" IN ('unet', 'swin')),
        CONSTRAINT "CHK_segmenter_runs_steps" CHECK ("steps" >= 1 AND "batch_size" >= 1),
        CONSTRAINT "CHK_segmenter_runs_done_has_weights" CHECK ("state" <> 'done' OR "weights_sha256" IS NOT NULL),
        CONSTRAINT "CHK_segmenter_runs_failed_has_error" CHECK ("state" <> 'failed' OR "error" IS NOT NULL)
      )`);
    await q.query(`CREATE INDEX "IDX_segmenter_runs_state" ON "segmenter_runs" ("state")`);
    await q.query(`CREATE INDEX "IDX_segmenter_runs_study" ON "segmenter_runs" ("study_id")`);
    await q.query(`
      CREATE TABLE "evaluations" (
        "id" uuid NOT NULL,
        "label" varchar(128) NOT NULL,
        "study_id" varchar(64) NOT NULL,
        "segmenter_run_id" uuid,
        "weights_sha256" varchar(64) NOT NULL,
        "state" varchar(16) NOT NULL,
        "sites" text NOT NULL,
        "result" text,
        "error" text,
        "created_at" timestamptz NOT NULL,
        "updated_at" timestamptz NOT NULL,
        "finished_at" timestamptz,
        CONSTRAINT "PK_evaluations" PRIMARY KEY ("id"),
        CONSTRAINT "CHK_evaluations_state" CHECK ("state" IN ('running', 'done', 'failed')),
        CONSTRAINT "CHK_evaluations_done_has_result" CHECK ("state" <> 'done' OR "result" IS NOT NULL),
        CONSTRAINT "FK_evaluations_segmenter_run" FOREIGN KEY ("segmenter_run_id")
          REFERENCES "segmenter_runs" ("id") ON DELETE SET NULL
      )`);
    await q.query(`CREATE INDEX "IDX_evaluations_state" ON "evaluations" ("state")`);
    await q.query(`CREATE INDEX "IDX_evaluations_weights" ON "evaluations" ("weights_sha256")`);
    await q.query(`
      CREATE TABLE "utility_runs" (
        "id" uuid NOT NULL,
        "study_id" varchar(64) NOT NULL,
        "params" text NOT NULL,
        "state" varchar(16) NOT NULL,
        "pool_sha256" varchar(64),
        "arms" text NOT NULL,
        "error" text,
        "created_by" uuid,
        "created_at" timestamptz NOT NULL,
        "updated_at" timestamptz NOT NULL,
        "finished_at" timestamptz,
        CONSTRAINT "PK_utility_runs" PRIMARY KEY ("id"),
        CONSTRAINT "CHK_utility_runs_state" CHECK ("state" IN ('running', 'done', 'failed')),
        CONSTRAINT "FK_utility_runs_created_by" FOREIGN KEY ("created_by") REFERENCES "users" ("id") ON DELETE SET NULL
      )`);
    await q.query(`CREATE INDEX "IDX_utility_runs_study" ON "utility_runs" ("study_id")`);
    await q.query(`CREATE INDEX "IDX_utility_runs_state" ON "utility_runs" ("state")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_utility_runs_state"`);
    await q.query(`DROP INDEX "IDX_utility_runs_study"`);
    await q.query(`DROP TABLE "utility_runs"`);
    await q.query(`DROP INDEX "IDX_evaluations_weights"`);
    await q.query(`DROP INDEX "IDX_evaluations_state"`);
    await q.query(`DROP TABLE "evaluations"`);
    await q.query(`DROP INDEX "IDX_segmenter_runs_study"`);
    await q.query(`DROP INDEX "IDX_segmenter_runs_state"`);
    await q.query(`DROP TABLE "segmenter_runs"`);
  }
}
