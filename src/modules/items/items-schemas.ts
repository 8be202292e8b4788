// Owns the request and response shapes of /v1/items: strict inputs, outputs that never carry internal columns.
// Bodies and responses are named (meta id): the OpenAPI document lists them as components, so generated
// clients get an Item type, not an inline one per operation.
import { z } from 'zod';
import { text, timestamp } from '../../lib/validation.ts';

const Tag = text(1, 50);
const Tags = z.array(Tag).max(20);

export const ItemIdParams = z.strictObject({ id: z.uuid().max(36) });

export const CreateItemBody = z
  .strictObject({
    name: text(1, 200),
    description: text(0, 2000).optional(),
    tags: Tags.optional(),
  })
  .meta({ id: 'CreateItem', description: 'A new item.' });
export type CreateItemBody = z.infer<typeof CreateItemBody>;

/** JSON merge patch: only what is sent changes; `description: null` clears it. */
export const UpdateItemBody = z
  .strictObject({
    name: text(1, 200).optional(),
    description: text(0, 2000).nullable().optional(),
    tags: Tags.optional(),
  })
  .refine((b) => Object.keys(b).length > 0, 'send at least one field')
  // The refinement is code; the document says the same with minProperties.
  .meta({
    id: 'UpdateItem',
    minProperties: 1,
    description: 'A JSON merge patch (RFC 7396): only the fields sent change; description: null clears it.',
  });
export type UpdateItemBody = z.infer<typeof UpdateItemBody>;

export const ListItemsQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(500).optional(),
  tag: Tag.optional(),
  namePrefix: text(1, 200).optional(),
  order: z.enum(['newest', 'oldest']).default('newest'),
});
export type ListItemsQuery = z.infer<typeof ListItemsQuery>;

/** Preconditions on one item: If-None-Match for reads (304), If-Match for writes (412 when stale). */
export const ReadItemHeaders = z.looseObject({
  'if-none-match': z
    .string()
    .max(8192)
    .optional()
    .describe('ETags the client holds: 304 Not Modified when one is current.'),
});
export const WriteItemHeaders = z.looseObject({
  'if-match': z
    .string()
    .max(8192)
    .optional()
    .describe('The ETag the change is based on (or *): 412 when the item has changed since.'),
});

export const Item = z
  .object({
    id: z.uuid().max(36),
    name: z.string().max(200),
    description: z.string().max(2000).nullable(),
    tags: z.array(z.string().max(50)).max(20),
    version: z.int().min(1).max(2_147_483_647).describe('Bumped by every change; the ETag is "v<version>".'),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: 'Item' });
export type Item = z.infer<typeof Item>;

export const ItemList = z
  .object({
    items: z.array(Item).max(100),
    next: z.string().max(500).nullable().describe('The cursor of the next page; null on the last one.'),
  })
  .meta({ id: 'ItemList' });
