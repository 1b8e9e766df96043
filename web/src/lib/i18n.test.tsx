import { describe, expect, it } from "vitest";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { I18nProvider, initialLanguage, translate, useI18n } from "./i18n";
import { LanguageSwitch } from "../app/Layout";
import { formatDuration } from "./time";

function Probe() {
  const { t } = useI18n();
  return (
    <>
      <LanguageSwitch />
      <h1>{t("inbox.title")}</h1>
      <p>{formatDuration(3 * 3600 + 5 * 60, t)}</p>
    </>
  );
}

describe("languages", () => {
  it("follow the browser, unless the person chose one", () => {
    expect(initialLanguage(null, ["ru-RU", "en-US"])).toBe("ru");
    expect(initialLanguage(null, ["de-DE", "en-GB"])).toBe("en");
    expect(initialLanguage(null, ["de-DE"])).toBe("en");
    expect(initialLanguage("en", ["ru-RU"])).toBe("en");
  });

  it("switch the whole page and remember the choice", async () => {
    render(
      <I18nProvider>
        <Probe />
      </I18nProvider>,
    );
    expect(screen.getByRole("heading")).toHaveTextContent("Inbox");
    expect(screen.getByText("3 h 5 min")).toBeInTheDocument();

    await userEvent.setup().selectOptions(screen.getByLabelText("Language"), "ru");

    expect(screen.getByRole("heading")).toHaveTextContent("Входящие");
    expect(screen.getByText("3 ч 5 мин")).toBeInTheDocument();
    expect(localStorage.getItem("jggl.language")).toBe("ru");
    expect(document.documentElement.lang).toBe("ru");
    expect(initialLanguage()).toBe("ru");
  });

  it("fill in parameters", () => {
    expect(translate("ru", "inbox.waiting", { time: "5 мин" })).toBe("ждёт 5 мин");
    expect(translate("en", "deal.number", { id: 42 })).toBe("Deal #42");
  });
});
