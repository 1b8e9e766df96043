import { useState } from "react";
import type { Deal } from "../../api/types";
import { useAuth } from "../../lib/auth";
import { useI18n } from "../../lib/i18n";
import type { DealListParams } from "../../lib/dealCache";
import { ErrorState, Loading, PageHeader } from "../../components/states";
import { usePipeline } from "../deals/api";
import { Column } from "./Column";
import { LostReasonDialog } from "./LostReasonDialog";
import { useMoveDeal, type Target } from "./useMoveDeal";

type Scope = "all" | "mine" | "unassigned";

export default function PipelinePage() {
  const { t } = useI18n();
  const { user } = useAuth();
  const pipeline = usePipeline();
  const move = useMoveDeal();
  const [scope, setScope] = useState<Scope>("all");
  const [platform, setPlatform] = useState<"" | "messenger" | "instagram">("");
  const [losing, setLosing] = useState<Deal | null>(null);

  const base = (extra: Partial<DealListParams>): DealListParams => {
    const params: DealListParams = { sort: "-last_message_at", ...extra };
    if (scope === "mine" && user) params.assignee_id = user.id;
    if (scope === "unassigned") params.unassigned = true;
    if (platform) params.platform = platform;
    return params;
  };

  const drop = (deal: Deal, target: Target | { kind: "lost" }) => {
    if (target.kind === "lost" && !("reason" in target)) setLosing(deal);
    else move.mutate({ deal, target: target as Target });
  };

  if (pipeline.isPending) return <Loading />;
  if (pipeline.isError) return <ErrorState error={pipeline.error} onRetry={() => void pipeline.refetch()} />;
  const stages = pipeline.data.stages.filter((s) => s.is_active);
  const targets = [
    ...stages.map((s) => ({ value: `stage:${s.key}`, label: s.name })),
    { value: "won", label: t("status.won") },
    { value: "lost", label: t("status.lost") },
  ];

  return (
    <>
      <PageHeader title={t("pipeline.title")}>
        <label>
          {t("inbox.scope")}
          <select value={scope} onChange={(e) => setScope(e.target.value as Scope)}>
            <option value="all">{t("inbox.scope.all")}</option>
            <option value="mine">{t("inbox.scope.mine")}</option>
            <option value="unassigned">{t("inbox.scope.unassigned")}</option>
          </select>
        </label>
        <label>
          {t("filters.platform")}
          <select value={platform} onChange={(e) => setPlatform(e.target.value as typeof platform)}>
            <option value="">{t("filters.any")}</option>
            <option value="messenger">{t("platform.messenger")}</option>
            <option value="instagram">{t("platform.instagram")}</option>
          </select>
        </label>
      </PageHeader>
      <p className="muted small">{t("pipeline.hint")}</p>
      <div className="board">
        {stages.map((s) => (
          <Column key={s.key} id={`stage:${s.key}`} title={s.name} count={s.count} amount={s.amount} params={base({ stage: s.key, status: "open" })} targets={targets} onDrop={(deal) => drop(deal, { kind: "stage", key: s.key })} onMove={drop} />
        ))}
        <Column id="won" title={t("status.won")} count={pipeline.data.won.count} amount={pipeline.data.won.amount} params={base({ status: "won" })} targets={targets} onDrop={(deal) => drop(deal, { kind: "won" })} onMove={drop} tone="won" />
        <Column id="lost" title={t("status.lost")} count={pipeline.data.lost.count} amount={pipeline.data.lost.amount} params={base({ status: "lost" })} targets={targets} onDrop={(deal) => drop(deal, { kind: "lost" })} onMove={drop} tone="lost" />
      </div>
      {losing && (
        <LostReasonDialog
          name={losing.contact.display_name}
          onCancel={() => setLosing(null)}
          onConfirm={(reason) => {
            move.mutate({ deal: losing, target: { kind: "lost", reason } });
            setLosing(null);
          }}
        />
      )}
    </>
  );
}
