import type { DealListParams } from "../../lib/dealCache";
import { useI18n } from "../../lib/i18n";
import { EmptyState, ErrorState, Loading } from "../../components/states";
import { useDealList } from "../deals/api";
import { DealRow } from "./DealRow";
import { uniqueDeals } from "./unique";

export function DealSection({ title, params, emptyText, awaiting = false }: { title: string; params: DealListParams; emptyText: string; awaiting?: boolean }) {
  const { t } = useI18n();
  const list = useDealList(params);
  const deals = uniqueDeals(list.data?.pages);

  return (
    <section className="inbox-section" aria-label={title}>
      <h2>
        {title} {list.data && <span className="count">{deals.length}{list.hasNextPage ? "+" : ""}</span>}
      </h2>
      {list.isPending ? (
        <Loading />
      ) : list.isError ? (
        <ErrorState error={list.error} onRetry={() => void list.refetch()} />
      ) : deals.length === 0 ? (
        <EmptyState title={emptyText} hint={awaiting ? t("inbox.noneWaitingHint") : t("inbox.noneRecentHint")} />
      ) : (
        <ul className="deal-rows">
          {deals.map((deal) => (
            <DealRow key={deal.id} deal={deal} />
          ))}
        </ul>
      )}
      {list.hasNextPage && (
        <button type="button" className="secondary load-more" disabled={list.isFetchingNextPage} onClick={() => void list.fetchNextPage()}>
          {list.isFetchingNextPage ? t("common.loading") : t("common.loadMore")}
        </button>
      )}
    </section>
  );
}
