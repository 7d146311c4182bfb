/**
 * Chat, part 4: the other OpenAI endpoints clients call (issue 12). `POST /v1/embeddings`
 * is metered like chat (begin_chat_request with kind 'embeddings' reserves the input
 * only; it is priced per input token) and `POST /v1/responses` like chat completions.
 * Embedding models get prices (OpenAI's list prices, USD per 1M input tokens) and join
 * every plan that lists its models.
 */

-- Section - Tables

insert into public.model_prices (model, input_usd_per_1m, cached_input_usd_per_1m, output_usd_per_1m, max_output_tokens)
values ('text-embedding-3-small', 0.02, 0.02, 0, 1),
       ('text-embedding-3-large', 0.13, 0.13, 0, 1)
on conflict (model) do nothing;

update public.plans p
set features = jsonb_set(p.features, '{models}',
                         (p.features -> 'models') || '["text-embedding-3-small", "text-embedding-3-large"]'::jsonb)
where p.features ? 'models' and not (p.features -> 'models') ? 'text-embedding-3-small';
