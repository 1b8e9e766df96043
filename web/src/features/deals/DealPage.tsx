import { useParams } from "react-router";
import { useI18n } from "../../lib/i18n";
import { ApiError } from "../../api/errors";
import { EmptyState, ErrorState, Loading } from "../../components/states";
import { Avatar, PlatformBadge, SlaBadge, StatusBadge, useCustomerName } from "../../components/badges";
import type { DealDetail } from "../../api/types";
import { useDeal } from "./api";
import { useMarkRead } from "./mutations";
import { Conversation } from "./Conversation";
import { DealControls } from "./DealControls";
import { AiPanel } from "./AiPanel";
import { TasksPanel } from "./TasksPanel";
import { Timeline } from "./Timeline";

export function DealPage() {
  const { t } = useI18n();
  const id = Number(useParams().dealId);
  const deal = useDeal(id);

  if (!Number.isInteger(id) || id <= 0) return <EmptyState title={t("deal.notFound")} hint={t("deal.notFoundHint")} />;
  if (deal.isPending) return <Loading />;
  if (deal.isError) {
    if (deal.error instanceof ApiError && deal.error.status === 404) return <EmptyState title={t("deal.notFound")} hint={t("deal.notFoundHint")} />;
    return <ErrorState error={deal.error} onRetry={() => void deal.refetch()} />;
  }
  return <DealView deal={deal.data} />;
}

function DealView({ deal: d }: { deal: DealDetail }) {
  const { t } = useI18n();
  useMarkRead(d);
  const customer = useCustomerName()(d.contact);
  return (
    <div className="deal-page">
      <header className="deal-header">
        <Avatar name={customer} url={d.contact.avatar_url} />
        <div>
          <h1>{customer}</h1>
          <p className="muted">
            <PlatformBadge platform={d.platform} /> {d.contact.username ? `@${d.contact.username} · ` : ""}
            {t("deal.number", { id: d.id })} · <StatusBadge status={d.status} /> <SlaBadge sla={d.sla} />
          </p>
        </div>
      </header>
      <div className="deal-grid">
        <section className="deal-conversation card" aria-label={t("deal.history")}>
          <Conversation deal={d} />
        </section>
        <aside className="deal-side">
          <DealControls deal={d} />
          <AiPanel deal={d} />
          <TasksPanel dealId={d.id} />
          <Timeline dealId={d.id} />
        </aside>
      </div>
    </div>
  );
}
