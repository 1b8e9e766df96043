import { useState, type FormEvent } from "react";
import { useI18n } from "../../lib/i18n";
import { formatDateTime, useNow, useTimeZone } from "../../lib/time";
import { ErrorState, Loading } from "../../components/states";
import { useTasks } from "./api";
import { useCreateTask, usePatchTask } from "./mutations";

export function TasksPanel({ dealId }: { dealId: number }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const now = useNow();
  const tasks = useTasks(dealId);
  const create = useCreateTask(dealId);
  const patch = usePatchTask(dealId);
  const [title, setTitle] = useState("");
  const [due, setDue] = useState("");

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!title.trim()) return;
    create.mutate(
      { title: title.trim(), due_at: due ? new Date(due).toISOString() : null },
      { onSuccess: () => { setTitle(""); setDue(""); } },
    );
  }

  return (
    <section className="card" aria-label={t("tasks.title")}>
      <h2>{t("tasks.title")}</h2>
      {tasks.isPending ? (
        <Loading />
      ) : tasks.isError ? (
        <ErrorState error={tasks.error} onRetry={() => void tasks.refetch()} />
      ) : tasks.data.items.length === 0 ? (
        <p className="muted">{t("tasks.none")}</p>
      ) : (
        <ul className="tasks">
          {tasks.data.items.map((task) => {
            const overdue = !task.done && task.due_at !== null && Date.parse(task.due_at) < now;
            return (
              <li key={task.id} className={overdue ? "overdue" : ""}>
                <label>
                  <input type="checkbox" checked={task.done} disabled={patch.isPending} onChange={(e) => patch.mutate({ id: task.id, body: { done: e.target.checked } })} />
                  <span className={task.done ? "done" : ""}>{task.title}</span>
                </label>
                {task.due_at && (
                  <span className="muted small">
                    {overdue ? t("tasks.overdue") : t("tasks.due")} {formatDateTime(task.due_at, locale, zone)}
                  </span>
                )}
              </li>
            );
          })}
        </ul>
      )}
      <form className="stack" onSubmit={submit}>
        <label>
          {t("tasks.new")}
          <input value={title} onChange={(e) => setTitle(e.target.value)} maxLength={300} />
        </label>
        <label>
          {t("tasks.dueAt")}
          <input type="datetime-local" value={due} onChange={(e) => setDue(e.target.value)} />
        </label>
        {(create.error ?? patch.error) && (
          <p className="error" role="alert">
            {(create.error ?? patch.error)?.message}
          </p>
        )}
        <button type="submit" className="secondary" disabled={!title.trim() || create.isPending}>
          {t("tasks.add")}
        </button>
      </form>
    </section>
  );
}
