import type { SchemaObject } from '@nestjs/swagger';
import { z } from 'zod';

/** The OpenAPI 3.0 form of a zod schema, for @ApiBody / @ApiResponse (bodies are validated by the zod schema). */
export function openApiSchema(schema: z.ZodType): SchemaObject {
  const { $schema: _ignored, ...json } = z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    io: 'input',
  }) as Record<string, unknown>;
  return json as SchemaObject;
}
