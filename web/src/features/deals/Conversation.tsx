import { useEffect, useRef } from "react";
import { useQueryClient } from "@tanstack/react-query";
import type { DealDetail, Message } from "../../api/types";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import { useI18n } from "../../lib/i18n";
import { messagesKey } from "../../lib/live";
import { EmptyState, ErrorState, Loading } from "../../components/states";
import { useMessages } from "./api";
import { MessageBubble } from "./MessageBubble";
import { ReplyBox } from "./ReplyBox";

type MessagesData = { items: Message[]; next_cursor: string | null };

export function Conversation({ deal }: { deal: DealDetail }) {
  const { t } = useI18n();
  const messages = useMessages(deal.id);
  const client = useQueryClient();
  const endRef = useRef<HTMLDivElement>(null);
  const count = messages.data?.items.length ?? 0;

  useEffect(() => {
    endRef.current?.scrollIntoView?.({ block: "end" });
  }, [count]);

  async function loadOlder() {
    const before = messages.data?.next_cursor;
    if (!before) return;
    const older = unwrap(await api.GET("/api/deals/{deal_id}/messages", { params: { path: { deal_id: deal.id }, query: { before, limit: 200 } } }));
    client.setQueryData<MessagesData>(messagesKey(deal.id), (data) =>
      data ? { items: [...older.items.filter((m) => !data.items.some((x) => x.id === m.id)), ...data.items], next_cursor: older.next_cursor } : data,
    );
  }

  if (messages.isPending) return <Loading />;
  if (messages.isError) return <ErrorState error={messages.error} onRetry={() => void messages.refetch()} />;
  const items = messages.data.items;
  return (
    <>
      <div className="messages" role="log" aria-live="polite" aria-label={t("deal.history")}>
        {messages.data.next_cursor && (
          <button type="button" className="secondary load-more" onClick={() => void loadOlder()}>
            {t("deal.olderMessages")}
          </button>
        )}
        {items.length === 0 ? (
          <EmptyState title={t("deal.noMessages")} />
        ) : (
          <ol className="message-list">
            {items.map((m) => (
              <MessageBubble key={m.id} message={m} />
            ))}
          </ol>
        )}
        <div ref={endRef} />
      </div>
      <ReplyBox deal={deal} />
    </>
  );
}
