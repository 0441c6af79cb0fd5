import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { CoordinatorConfig } from '../config/coordinator-config.js';
import { COORDINATOR_VERSION } from '../version.js';

export const OPENAPI_UI_PATH = 'api/docs';
export const OPENAPI_JSON_PATH = 'api/docs-json';

/** Swagger UI at /api/docs and the OpenAPI document at /api/docs-json (both public). */
export function setupOpenApi(app: INestApplication, config: CoordinatorConfig): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('fedsynth coordinator')
      .setDescription(
        'Consortium coordinator of fedsynth: user accounts, site enrolment, and (later) studies, rounds, ' +
          `the sample pool, audits and releases. Audience: ${config.audience}.`,
      )
      .setVersion(COORDINATOR_VERSION)
      .addServer(config.publicUrl)
      .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
      .build(),
  );
  SwaggerModule.setup(OPENAPI_UI_PATH, app, document, {
    jsonDocumentUrl: OPENAPI_JSON_PATH,
    customSiteTitle: 'fedsynth coordinator API',
  });
}
