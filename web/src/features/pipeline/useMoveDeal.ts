import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { Deal, DealPatch, Pipeline } from "../../api/types";
import { useAuth } from "../../lib/auth";
import { restoreDeals, snapshotDeals, stageRef, upsertDeal } from "../../lib/dealCache";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";

/** Where a card can go: an open stage (by key), or the won / lost columns. */
export type Target = { kind: "stage"; key: string } | { kind: "won" } | { kind: "lost"; reason: string | null };

/** The PATCH for a move; a closed deal dropped on a stage is reopened there. */
export function targetPatch(target: Target, deal: Pick<Deal, "status">): DealPatch {
  if (target.kind === "stage") return deal.status === "open" ? { stage: target.key } : { stage: target.key, status: "open" };
  if (target.kind === "won") return { status: "won" };
  return { status: "lost", lost_reason: target.reason };
}

function columnOf(deal: Deal): string {
  return deal.status === "open" ? deal.stage.key : deal.status;
}

/** The board's counts and sums with one card moved from one column to another. */
export function shiftTotals(pipeline: Pipeline, deal: Deal, from: string, to: string): Pipeline {
  const amount = Number(deal.amount ?? 0) || 0;
  const add = (total: { count: number; amount: string }, sign: 1 | -1) => ({
    ...total,
    count: Math.max(0, total.count + sign),
    amount: String(Number(total.amount) + sign * amount),
  });
  const stages = pipeline.stages.map((s) => (s.key === from ? { ...s, ...add(s, -1) } : s.key === to ? { ...s, ...add(s, 1) } : s));
  const next = { ...pipeline, stages };
  if (from === "won") next.won = add(next.won, -1);
  if (from === "lost") next.lost = add(next.lost, -1);
  if (to === "won") next.won = add(next.won, 1);
  if (to === "lost") next.lost = add(next.lost, 1);
  return next;
}

/**
 * Moves a card at once, then asks crm; if crm refuses, every cache goes back to how it
 * was and a message says why.
 */
export function useMoveDeal() {
  const client = useQueryClient();
  const { user } = useAuth();
  const { t } = useI18n();
  const toast = useToast();
  return useMutation({
    mutationFn: async ({ deal, target }: { deal: Deal; target: Target }) =>
      unwrap(await api.PATCH("/api/deals/{deal_id}", { params: { path: { deal_id: deal.id } }, body: targetPatch(target, deal) })),
    onMutate: async ({ deal, target }) => {
      await client.cancelQueries({ queryKey: ["deals"] });
      const snapshot = snapshotDeals(client);
      const pipeline = client.getQueryData<Pipeline>(["pipeline"]);
      const moved: Deal =
        target.kind === "stage"
          ? { ...deal, status: "open", stage: stageRef(client, target.key) }
          : { ...deal, status: target.kind === "won" ? "won" : "lost" };
      upsertDeal(client, moved, user);
      if (pipeline) client.setQueryData(["pipeline"], shiftTotals(pipeline, deal, columnOf(deal), columnOf(moved)));
      return { snapshot, pipeline };
    },
    onError: (error, { deal }, context) => {
      if (context) {
        restoreDeals(client, context.snapshot);
        if (context.pipeline) client.setQueryData(["pipeline"], context.pipeline);
      }
      toast.show(t("pipeline.moveFailed", { name: deal.contact.display_name, reason: error.message }), "error");
    },
    onSuccess: (saved) => upsertDeal(client, saved, user),
    onSettled: () => void client.invalidateQueries({ queryKey: ["pipeline"] }),
  });
}
