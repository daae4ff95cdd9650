-- Worker processes delivering webhooks, each seen at every claim round, so
-- each takes a fair share of the subscriptions instead of the first to look
-- taking them all.
CREATE TABLE webhook_deliverers (
    owner   text PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
