// Owns the request and response shapes of /v1/items: strict inputs, outputs that never carry internal columns.
import { z } from 'zod';
import { text } from '../../lib/validation.ts';

const Tag = text(1, 50);
const Tags = z.array(Tag).max(20);

export const ItemIdParams = z.strictObject({ id: z.uuid() });

export const CreateItemBody = z.strictObject({
  name: text(1, 200),
  description: text(0, 2000).optional(),
  tags: Tags.optional(),
});
export type CreateItemBody = z.infer<typeof CreateItemBody>;

/** JSON merge patch: only what is sent changes; `description: null` clears it. */
export const UpdateItemBody = z
  .strictObject({
    name: text(1, 200).optional(),
    description: text(0, 2000).nullable().optional(),
    tags: Tags.optional(),
  })
  .refine((b) => Object.keys(b).length > 0, 'send at least one field');
export type UpdateItemBody = z.infer<typeof UpdateItemBody>;

export const ListItemsQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(500).optional(),
  tag: Tag.optional(),
  namePrefix: text(1, 200).optional(),
  order: z.enum(['newest', 'oldest']).default('newest'),
});
export type ListItemsQuery = z.infer<typeof ListItemsQuery>;

export const Item = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  tags: z.array(z.string()),
  version: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Item = z.infer<typeof Item>;

export const ItemList = z.object({ items: z.array(Item), next: z.string().nullable() });
