import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { components } from "../../api/schema";
import { dealKey, dealListKey, type DealListParams } from "../../lib/dealCache";
import { activitiesKey, messagesKey, tasksKey } from "../../lib/live";

type DealPage = components["schemas"]["DealPage"];
const PAGE_SIZE = 30;

export function useDealList(params: DealListParams, enabled = true) {
  return useInfiniteQuery({
    queryKey: dealListKey(params),
    enabled,
    initialPageParam: null as string | null,
    getNextPageParam: (last: DealPage) => last.next_cursor ?? null,
    queryFn: async ({ pageParam, signal }): Promise<DealPage> =>
      unwrap(await api.GET("/api/deals", { params: { query: { ...params, limit: PAGE_SIZE, cursor: pageParam } }, signal })),
  });
}

export function useDeal(id: number) {
  return useQuery({
    queryKey: dealKey(id),
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/deals/{deal_id}", { params: { path: { deal_id: id } }, signal })),
  });
}

export function useMessages(id: number) {
  return useQuery({
    queryKey: messagesKey(id),
    queryFn: async ({ signal }) =>
      unwrap(await api.GET("/api/deals/{deal_id}/messages", { params: { path: { deal_id: id }, query: { limit: 200 } }, signal })),
  });
}

export function useActivities(id: number) {
  return useQuery({
    queryKey: activitiesKey(id),
    queryFn: async ({ signal }) =>
      unwrap(await api.GET("/api/deals/{deal_id}/activities", { params: { path: { deal_id: id }, query: { limit: 200 } }, signal })),
  });
}

export function useTasks(id: number) {
  return useQuery({
    queryKey: tasksKey(id),
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/deals/{deal_id}/tasks", { params: { path: { deal_id: id } }, signal })),
  });
}

export function usePipeline() {
  return useQuery({
    queryKey: ["pipeline"],
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/pipeline", { signal })),
  });
}

/** Users to assign deals to: admins can list them; managers only know themselves. */
export function useUsers(enabled: boolean) {
  return useQuery({
    queryKey: ["users"],
    enabled,
    staleTime: 5 * 60_000,
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/users", { signal })),
  });
}
