import { useState } from "react";
import { useInfiniteQuery } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { components } from "../../api/schema";
import type { SystemEntry } from "../../api/types";
import { useI18n } from "../../lib/i18n";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";

type Kind = "" | SystemEntry["kind"];

export default function SystemLogPage() {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const [kind, setKind] = useState<Kind>("");
  const log = useInfiniteQuery({
    queryKey: ["system-log", kind],
    initialPageParam: null as string | null,
    getNextPageParam: (last: components["schemas"]["SystemPage"]) => last.next_cursor ?? null,
    queryFn: async ({ pageParam, signal }): Promise<components["schemas"]["SystemPage"]> =>
      unwrap(await api.GET("/api/system-log", { params: { query: { kind: kind || null, cursor: pageParam, limit: 50 } }, signal })),
  });
  const items = log.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <>
      <PageHeader title={t("system.title")}>
        <label>
          {t("system.kind")}
          <select value={kind} onChange={(e) => setKind(e.target.value as Kind)}>
            <option value="">{t("filters.any")}</option>
            <option value="dead_letter">{t("system.kind.dead_letter")}</option>
            <option value="integration_failure">{t("system.kind.integration_failure")}</option>
            <option value="channel_health">{t("system.kind.channel_health")}</option>
          </select>
        </label>
      </PageHeader>
      {log.isPending ? (
        <Loading />
      ) : log.isError ? (
        <ErrorState error={log.error} onRetry={() => void log.refetch()} />
      ) : items.length === 0 ? (
        <EmptyState title={t("system.none")} hint={t("system.noneHint")} />
      ) : (
        <ul className="plain-list">
          {items.map((e) => (
            <li key={e.id} className={`card log-entry log-${e.kind}`}>
              <p>
                <span className="badge">{t(`system.kind.${e.kind}`)}</span> <strong>{e.source}</strong> {e.subject && <code>{e.subject}</code>}{" "}
                <span className="muted small">{formatDateTime(e.occurred_at, locale, zone)}</span>
                {e.deliveries !== null && <span className="muted small"> · {t("system.deliveries", { n: e.deliveries })}</span>}
              </p>
              <p>{e.message}</p>
              {Object.keys(e.details).length > 0 && (
                <details>
                  <summary>{t("system.details")}</summary>
                  <pre>{JSON.stringify(e.details, null, 2)}</pre>
                </details>
              )}
            </li>
          ))}
        </ul>
      )}
      {log.hasNextPage && (
        <button type="button" className="secondary load-more" disabled={log.isFetchingNextPage} onClick={() => void log.fetchNextPage()}>
          {t("common.loadMore")}
        </button>
      )}
    </>
  );
}
