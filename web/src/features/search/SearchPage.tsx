import { useEffect, useState, type KeyboardEvent } from "react";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useNavigate, useSearchParams } from "react-router";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { components } from "../../api/schema";
import { useI18n } from "../../lib/i18n";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";
import { PlatformBadge, StatusBadge } from "../../components/badges";
import { Snippet } from "../../components/Snippet";

function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const id = window.setTimeout(() => setDebounced(value), ms);
    return () => window.clearTimeout(id);
  }, [value, ms]);
  return debounced;
}

export default function SearchPage() {
  const { t } = useI18n();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const [text, setText] = useState(params.get("q") ?? "");
  const [active, setActive] = useState(0);
  const q = useDebounced(text.trim(), 200);

  useEffect(() => {
    setParams(q ? { q } : {}, { replace: true });
  }, [q, setParams]);

  const results = useQuery({
    queryKey: ["search", q],
    enabled: q.length > 0,
    placeholderData: keepPreviousData,
    queryFn: async ({ signal }): Promise<components["schemas"]["SearchResults"]> => unwrap(await api.GET("/api/search", { params: { query: { q, limit: 30 } }, signal })),
  });
  const items = q ? (results.data?.items ?? []) : [];

  function onKeyDown(event: KeyboardEvent<HTMLInputElement>) {
    if (!items.length) return;
    if (event.key === "ArrowDown") {
      event.preventDefault();
      setActive((i) => Math.min(items.length - 1, i + 1));
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      setActive((i) => Math.max(0, i - 1));
    } else if (event.key === "Enter") {
      const hit = items[active];
      if (hit) navigate(`/deals/${hit.id}`);
    }
  }

  return (
    <>
      <PageHeader title={t("search.title")} />
      <div className="search-box">
        <label htmlFor="search-input" className="sr-only">
          {t("search.label")}
        </label>
        <input
          id="search-input"
          type="search"
          role="combobox"
          aria-expanded={items.length > 0}
          aria-controls="search-results"
          aria-activedescendant={items[active] ? `hit-${items[active].id}` : undefined}
          aria-autocomplete="list"
          autoFocus
          placeholder={t("search.placeholder")}
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            setActive(0);
          }}
          onKeyDown={onKeyDown}
        />
        <p className="muted small">{t("search.keys")}</p>
      </div>
      {!q ? (
        <EmptyState title={t("search.start")} hint={t("search.startHint")} />
      ) : results.isPending ? (
        <Loading />
      ) : results.isError ? (
        <ErrorState error={results.error} onRetry={() => void results.refetch()} />
      ) : items.length === 0 ? (
        <EmptyState title={t("search.none", { q })} hint={t("search.noneHint")} />
      ) : (
        <ul id="search-results" role="listbox" className="search-results" aria-label={t("search.results")}>
          {items.map((hit, i) => (
            <li
              key={hit.id}
              id={`hit-${hit.id}`}
              role="option"
              aria-selected={i === active}
              className={i === active ? "hit active" : "hit"}
              onMouseEnter={() => setActive(i)}
              onClick={() => navigate(`/deals/${hit.id}`)}
            >
              <span className="hit-title">
                <strong>{hit.contact.display_name}</strong> <PlatformBadge platform={hit.platform} /> <span className="badge badge-stage">{hit.stage.name}</span> <StatusBadge status={hit.status} />
              </span>
              <Snippet text={hit.snippet} />
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
