import { useSearchParams } from "react-router";
import { useAuth } from "../../lib/auth";
import { useI18n } from "../../lib/i18n";
import { PageHeader } from "../../components/states";
import { usePipeline } from "../deals/api";
import { inboxParams, readFilters, type InboxFilters } from "./filters";
import { DealSection } from "./DealSection";

export function InboxPage() {
  const { t } = useI18n();
  const { user } = useAuth();
  const [search, setSearch] = useSearchParams();
  const filters = readFilters(search);

  const update = (patch: Partial<InboxFilters>) => {
    const next = { ...filters, ...patch };
    const params = new URLSearchParams();
    if (next.scope !== "all") params.set("scope", next.scope);
    if (next.platform) params.set("platform", next.platform);
    if (next.stage) params.set("stage", next.stage);
    setSearch(params, { replace: true });
  };

  return (
    <>
      <PageHeader title={t("inbox.title")} />
      <InboxFilterBar filters={filters} onChange={update} />
      <DealSection title={t("inbox.awaiting")} params={inboxParams(filters, user, true)} emptyText={t("inbox.noneWaiting")} awaiting />
      <DealSection title={t("inbox.recent")} params={inboxParams(filters, user, false)} emptyText={t("inbox.noneRecent")} />
    </>
  );
}

function InboxFilterBar({ filters, onChange }: { filters: InboxFilters; onChange: (patch: Partial<InboxFilters>) => void }) {
  const { t } = useI18n();
  const pipeline = usePipeline();
  return (
    <div className="filters" role="group" aria-label={t("inbox.filters")}>
      <div className="segmented" role="radiogroup" aria-label={t("inbox.scope")}>
        {(["all", "mine", "unassigned"] as const).map((scope) => (
          <button key={scope} type="button" role="radio" aria-checked={filters.scope === scope} className={filters.scope === scope ? "active" : ""} onClick={() => onChange({ scope })}>
            {t(`inbox.scope.${scope}`)}
          </button>
        ))}
      </div>
      <label>
        {t("filters.platform")}
        <select value={filters.platform} onChange={(e) => onChange({ platform: e.target.value as InboxFilters["platform"] })}>
          <option value="">{t("filters.any")}</option>
          <option value="messenger">{t("platform.messenger")}</option>
          <option value="instagram">{t("platform.instagram")}</option>
        </select>
      </label>
      <label>
        {t("filters.stage")}
        <select value={filters.stage} onChange={(e) => onChange({ stage: e.target.value })}>
          <option value="">{t("filters.any")}</option>
          {pipeline.data?.stages.map((s) => (
            <option key={s.key} value={s.key}>
              {s.name}
            </option>
          ))}
        </select>
      </label>
    </div>
  );
}
