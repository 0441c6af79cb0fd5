import type { MigrationInterface, QueryRunner } from 'typeorm';

/** PostgreSQL: memorization audits and the releases made from approved ones. */
export class AuditsReleasesPostgres1765100000000 implements MigrationInterface {
  name = 'AuditsReleasesPostgres1765100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "audits" (
        "id" uuid NOT NULL,
        "study_id" varchar(128) NOT NULL,
        "state" varchar(16) NOT NULL,
        "margin" double precision NOT NULL,
        "candidate_count" integer NOT NULL,
        "pool_sha256" varchar(64) NOT NULL,
        "sources" text NOT NULL,
        "site_results" text NOT NULL,
        "combined" text,
        "error" text,
        "revision" integer NOT NULL,
        "created_by" uuid,
        "decided_by" uuid,
        "decision_comment" text,
        "decided_at" timestamptz,
        "created_at" timestamptz NOT NULL,
        "updated_at" timestamptz NOT NULL,
        CONSTRAINT "PK_audits" PRIMARY KEY ("id"),
        CONSTRAINT "CHK_audits_state" CHECK ("state" IN ('scoring', 'scored', 'approved', 'rejected', 'failed')),
        CONSTRAINT "CHK_audits_margin" CHECK ("margin" >= 0 AND "margin" <= 1),
        CONSTRAINT "CHK_audits_decided" CHECK ("state" NOT IN ('approved', 'rejected') OR "decided_at" IS NOT NULL),
        CONSTRAINT "CHK_audits_scored" CHECK ("state" IN ('scoring', 'failed') OR "combined" IS NOT NULL)
      )`);
    await q.query(`CREATE INDEX "IDX_audits_study" ON "audits" ("study_id")`);
    await q.query(`
      CREATE TABLE "releases" (
        "id" uuid NOT NULL,
        "version" integer NOT NULL,
        "audit_id" uuid NOT NULL,
        "study_id" varchar(128) NOT NULL,
        "state" varchar(16) NOT NULL,
        "folder" varchar(1024) NOT NULL,
        "manifest_sha256" varchar(64),
        "size" bigint,
        "sample_count" integer,
        "error" text,
        "created_at" timestamptz NOT NULL,
        "created_by" uuid,
        "ready_at" timestamptz,
        CONSTRAINT "PK_releases" PRIMARY KEY ("id"),
        CONSTRAINT "UQ_releases_version" UNIQUE ("version"),
        CONSTRAINT "UQ_releases_audit" UNIQUE ("audit_id"),
        CONSTRAINT "CHK_releases_state" CHECK ("state" IN ('building', 'ready', 'failed')),
        CONSTRAINT "CHK_releases_ready" CHECK ("state" <> 'ready' OR "manifest_sha256" IS NOT NULL),
        CONSTRAINT "FK_releases_audit" FOREIGN KEY ("audit_id") REFERENCES "audits" ("id")
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "releases"`);
    await q.query(`DROP INDEX "IDX_audits_study"`);
    await q.query(`DROP TABLE "audits"`);
  }
}
