import { useQuery } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import { lastDays, type RangeDays } from "./range";

export function useManagerStats(days: RangeDays) {
  return useQuery({
    queryKey: ["stats", "managers", days],
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/stats/managers", { params: { query: lastDays(days) }, signal })),
  });
}

export function useFunnel(days: RangeDays) {
  return useQuery({
    queryKey: ["stats", "funnel", days],
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/stats/funnel", { params: { query: lastDays(days) }, signal })),
  });
}
