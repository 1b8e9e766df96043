import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { Job } from "../../api/types";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";

export default function JobsPage() {
  const { t } = useI18n();
  const jobs = useQuery({ queryKey: ["jobs"], refetchInterval: 30_000, queryFn: async ({ signal }) => unwrap(await api.GET("/api/jobs", { signal })) });
  return (
    <>
      <PageHeader title={t("jobs.title")} />
      {jobs.isPending ? (
        <Loading />
      ) : jobs.isError ? (
        <ErrorState error={jobs.error} onRetry={() => void jobs.refetch()} />
      ) : jobs.data.items.length === 0 ? (
        <EmptyState title={t("jobs.none")} hint={t("jobs.noneHint")} />
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{t("jobs.name")}</th>
                <th scope="col">{t("jobs.schedule")}</th>
                <th scope="col">{t("jobs.nextRun")}</th>
                <th scope="col">{t("jobs.lastOutcome")}</th>
                <th scope="col">{t("jobs.lastSuccess")}</th>
                <th scope="col">{t("common.actions")}</th>
              </tr>
            </thead>
            <tbody>
              {jobs.data.items.map((job) => (
                <JobRow key={job.name} job={job} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function JobRow({ job }: { job: Job }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const client = useQueryClient();
  const toast = useToast();
  const run = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/jobs/{name}/run", { params: { path: { name: job.name } } })),
    onSuccess: () => {
      toast.show(t("jobs.started", { name: job.name }));
      window.setTimeout(() => void client.invalidateQueries({ queryKey: ["jobs"] }), 3000);
    },
    onError: (e) => toast.show(e.message, "error"),
  });
  const toggle = useMutation({
    mutationFn: async () => unwrap(await api.PATCH("/api/jobs/{name}", { params: { path: { name: job.name } }, body: { enabled: !job.enabled } })),
    onSuccess: () => {
      toast.show(job.enabled ? t("jobs.disabledDone", { name: job.name }) : t("jobs.enabledDone", { name: job.name }));
      window.setTimeout(() => void client.invalidateQueries({ queryKey: ["jobs"] }), 1500);
    },
    onError: (e) => toast.show(e.message, "error"),
  });
  const outcome = job.last_outcome;
  return (
    <tr className={job.enabled ? "" : "inactive"}>
      <th scope="row">
        {job.name}
        <span className="muted small block">{job.description}</span>
      </th>
      <td>
        <code>{job.expression}</code> <span className="muted small">{job.timezone}</span>
      </td>
      <td>{job.enabled ? formatDateTime(job.next_run, locale, zone) : t("jobs.off")}</td>
      <td>
        {outcome ? (
          <>
            <span className={`badge badge-job-${outcome.status}`}>{t(`jobs.status.${outcome.status}`)}</span> {formatDateTime(outcome.finished_at ?? outcome.fired_at, locale, zone)}
            {outcome.error && <span className="error block">{outcome.error}</span>}
          </>
        ) : (
          "—"
        )}
      </td>
      <td>{formatDateTime(job.last_success_at, locale, zone)}</td>
      <td>
        <div className="row">
        <button type="button" disabled={run.isPending} onClick={() => run.mutate()}>
          {t("jobs.runNow")}
        </button>
        <button type="button" className="secondary" disabled={toggle.isPending} onClick={() => toggle.mutate()}>
          {job.enabled ? t("jobs.disable") : t("jobs.enable")}
        </button>
        </div>
      </td>
    </tr>
  );
}
