import type { User } from "../../api/types";
import type { DealListParams } from "../../lib/dealCache";

export type Scope = "all" | "mine" | "unassigned";

export interface InboxFilters {
  scope: Scope;
  platform: "" | "messenger" | "instagram";
  stage: string;
}

export function readFilters(search: URLSearchParams): InboxFilters {
  const scope = search.get("scope");
  const platform = search.get("platform");
  return {
    scope: scope === "mine" || scope === "unassigned" ? scope : "all",
    platform: platform === "messenger" || platform === "instagram" ? platform : "",
    stage: search.get("stage") ?? "",
  };
}

/** The two lists the inbox shows: customers waiting for us, then everything else. */
export function inboxParams(filters: InboxFilters, me: User | null, awaiting: boolean): DealListParams {
  const params: DealListParams = { status: "open", awaiting_reply: awaiting, sort: "-last_message_at" };
  if (filters.scope === "mine" && me) params.assignee_id = me.id;
  if (filters.scope === "unassigned") params.unassigned = true;
  if (filters.platform) params.platform = filters.platform;
  if (filters.stage) params.stage = filters.stage;
  return params;
}
