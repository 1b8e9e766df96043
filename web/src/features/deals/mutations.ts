import { useEffect, useRef } from "react";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { DealDetail, DealPatch, Message } from "../../api/types";
import { useAuth } from "../../lib/auth";
import { dealKey, upsertDeal } from "../../lib/dealCache";
import { activitiesKey, messagesKey, tasksKey } from "../../lib/live";
import type { components } from "../../api/schema";

/** After crm accepted a change: the detail and every list showing the deal follow. */
function useDealSaved() {
  const client = useQueryClient();
  const { user } = useAuth();
  return (deal: DealDetail) => {
    client.setQueryData(dealKey(deal.id), deal);
    upsertDeal(client, deal, user);
    void client.invalidateQueries({ queryKey: activitiesKey(deal.id) });
    void client.invalidateQueries({ queryKey: ["pipeline"] });
  };
}

export function usePatchDeal(id: number) {
  const saved = useDealSaved();
  return useMutation({
    mutationFn: async (body: DealPatch) =>
      unwrap(await api.PATCH("/api/deals/{deal_id}", { params: { path: { deal_id: id } }, body })),
    onSuccess: saved,
  });
}

export function useTakeDeal(id: number) {
  const saved = useDealSaved();
  return useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/deals/{deal_id}/take", { params: { path: { deal_id: id } } })),
    onSuccess: saved,
  });
}

/**
 * Marks the open deal read for the whole team (`POST /api/deals/{id}/read`) when it is
 * opened with unread messages and whenever new ones arrive while it stays open and
 * visible; a tab in the background waits until it is looked at again.
 */
export function useMarkRead(deal: { id: number; unread: number }) {
  const client = useQueryClient();
  const { user } = useAuth();
  const inFlight = useRef(false);
  const { id, unread } = deal;
  useEffect(() => {
    if (unread === 0) return;
    const read = () => {
      if (inFlight.current || document.visibilityState === "hidden") return;
      inFlight.current = true;
      void api
        .POST("/api/deals/{deal_id}/read", { params: { path: { deal_id: id } } })
        .then(({ data }) => {
          if (!data) return;
          client.setQueryData(dealKey(id), data);
          upsertDeal(client, data, user);
        })
        .finally(() => {
          inFlight.current = false;
        });
    };
    read();
    document.addEventListener("visibilitychange", read);
    return () => document.removeEventListener("visibilitychange", read);
  }, [client, user, id, unread]);
}

export function useSendReply(id: number) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (body: components["schemas"]["ReplyIn"]) =>
      unwrap(await api.POST("/api/deals/{deal_id}/messages", { params: { path: { deal_id: id } }, body })),
    onSuccess: (message) => {
      // The reply shows at once as "queued"; live events turn it sent or failed.
      client.setQueryData<{ items: Message[]; next_cursor: string | null }>(messagesKey(id), (data) => {
        if (!data) return data;
        if (data.items.some((m) => m.id === message.id)) return data;
        return { ...data, items: [...data.items, message] };
      });
    },
  });
}

export function useCreateTask(dealId: number) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (body: components["schemas"]["TaskCreate"]) =>
      unwrap(await api.POST("/api/deals/{deal_id}/tasks", { params: { path: { deal_id: dealId } }, body })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: tasksKey(dealId) });
      void client.invalidateQueries({ queryKey: activitiesKey(dealId) });
    },
  });
}

export function usePatchTask(dealId: number) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async ({ id, body }: { id: number; body: components["schemas"]["TaskPatch"] }) =>
      unwrap(await api.PATCH("/api/tasks/{task_id}", { params: { path: { task_id: id } }, body })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: tasksKey(dealId) });
      void client.invalidateQueries({ queryKey: activitiesKey(dealId) });
    },
  });
}
