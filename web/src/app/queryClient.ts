import { QueryClient } from "@tanstack/react-query";
import { ApiError } from "../api/errors";

/** The longest `Retry-After` a query waits out by itself; past it the page shows the refusal. */
export const RATE_LIMIT_AUTO_RETRY_SECONDS = 60;

function rateLimited(error: unknown): error is ApiError {
  return error instanceof ApiError && error.status === 429;
}

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 30_000,
        refetchOnWindowFocus: false,
        // A 429 is asked again once, after the wait crm named (the person sees the toast meanwhile);
        // other 4xx answers will not change by asking again; network blips and 5xx might.
        retry: (count, error) =>
          rateLimited(error)
            ? count < 1 && (error.retryAfter ?? 1) <= RATE_LIMIT_AUTO_RETRY_SECONDS
            : !(error instanceof ApiError && error.status < 500) && count < 2,
        retryDelay: (count, error) =>
          rateLimited(error) ? (error.retryAfter ?? 1) * 1000 : Math.min(1000 * 2 ** count, 30_000),
      },
      // A change is never sent again behind the person's back: they see why and press again.
      mutations: { retry: false },
    },
  });
}
