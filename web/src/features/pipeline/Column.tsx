import { useEffect, useRef, useState, type DragEvent } from "react";
import type { Deal } from "../../api/types";
import type { DealListParams } from "../../lib/dealCache";
import { useI18n } from "../../lib/i18n";
import { formatMoney } from "../../lib/time";
import { ErrorState } from "../../components/states";
import { useDealList } from "../deals/api";
import { uniqueDeals } from "../inbox/unique";
import { Card } from "./Card";
import type { Target } from "./useMoveDeal";

export const DRAG_TYPE = "application/x-jggl-deal";

interface ColumnProps {
  id: string;
  title: string;
  count: number;
  amount: string;
  params: DealListParams;
  targets: { value: string; label: string }[];
  onDrop: (deal: Deal) => void;
  onMove: (deal: Deal, target: Target | { kind: "lost" }) => void;
  tone?: "won" | "lost";
}

export function Column({ id, title, count, amount, params, targets, onDrop, onMove, tone }: ColumnProps) {
  const { t, locale } = useI18n();
  const list = useDealList(params);
  const deals = uniqueDeals(list.data?.pages);
  const [over, setOver] = useState(false);
  const sentinel = useRef<HTMLDivElement>(null);
  const { hasNextPage, isFetchingNextPage, fetchNextPage } = list;

  // Columns page as you scroll: the next page loads when the column's end comes into view.
  useEffect(() => {
    const node = sentinel.current;
    if (!node || !hasNextPage || typeof IntersectionObserver === "undefined") return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !isFetchingNextPage) void fetchNextPage();
    });
    observer.observe(node);
    return () => observer.disconnect();
  }, [hasNextPage, isFetchingNextPage, fetchNextPage]);

  function handleDrop(event: DragEvent) {
    event.preventDefault();
    setOver(false);
    const dealId = Number(event.dataTransfer.getData(DRAG_TYPE));
    const deal = findDragged(dealId);
    if (deal) onDrop(deal);
  }

  return (
    <section
      className={`column${over ? " drop-over" : ""}${tone ? ` column-${tone}` : ""}`}
      aria-labelledby={`col-${id}`}
      onDragOver={(e) => {
        if (e.dataTransfer.types.includes(DRAG_TYPE)) {
          e.preventDefault();
          setOver(true);
        }
      }}
      onDragLeave={() => setOver(false)}
      onDrop={handleDrop}
    >
      <header className="column-header">
        <h2 id={`col-${id}`}>{title}</h2>
        <span className="muted small">
          {t("pipeline.countSum", { count, sum: formatMoney(amount, locale) })}
        </span>
      </header>
      {list.isError && <ErrorState error={list.error} onRetry={() => void list.refetch()} />}
      <ul className="cards">
        {deals.map((deal) => (
          <Card key={deal.id} deal={deal} current={id} targets={targets} onMove={onMove} />
        ))}
      </ul>
      {!list.isPending && deals.length === 0 && <p className="muted small column-empty">{t("pipeline.emptyColumn")}</p>}
      <div ref={sentinel} />
      {hasNextPage && (
        <button type="button" className="secondary load-more" disabled={isFetchingNextPage} onClick={() => void fetchNextPage()}>
          {isFetchingNextPage ? t("common.loading") : t("common.loadMore")}
        </button>
      )}
    </section>
  );
}

// The card being dragged, remembered at drag start (dataTransfer only carries strings).
let dragged: Deal | null = null;
export function setDragged(deal: Deal | null): void {
  dragged = deal;
}
function findDragged(id: number): Deal | null {
  return dragged && dragged.id === id ? dragged : null;
}
