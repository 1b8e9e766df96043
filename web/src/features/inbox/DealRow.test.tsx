import { describe, expect, it } from "vitest";
import { screen } from "@testing-library/react";
import { deal } from "../../test/fixtures";
import { renderWith } from "../../test/render";
import { DealRow } from "./DealRow";

describe("an inbox row", () => {
  it("shows how many messages nobody has read, 99+ past 99", () => {
    const { unmount } = renderWith(
      <ul>
        <DealRow deal={deal(1, { unread: 3 })} />
      </ul>,
    );
    expect(screen.getByText("Unread messages: 3").parentElement).toHaveTextContent(/^3Unread/);
    expect(screen.getByRole("listitem")).toHaveClass("unread");
    unmount();

    renderWith(
      <ul>
        <DealRow deal={deal(2, { unread: 100 })} />
      </ul>,
    );
    expect(screen.getByText("Unread messages: 99+").parentElement).toHaveTextContent(/^99\+Unread/);
  });

  it("shows no count when everything was read", () => {
    renderWith(
      <ul>
        <DealRow deal={deal(1, { unread: 0 })} />
      </ul>,
    );
    expect(screen.queryByText(/Unread messages/)).toBeNull();
    expect(screen.getByRole("listitem")).not.toHaveClass("unread");
  });

  it("calls a customer whose profile is not known yet a new customer, not a platform id", () => {
    const unknown = deal(3);
    renderWith(
      <ul>
        <DealRow deal={{ ...unknown, contact: { ...unknown.contact, display_name: unknown.contact.external_id } }} />
      </ul>,
    );
    expect(screen.getByText("New customer")).toBeInTheDocument();
    expect(screen.queryByText(unknown.contact.external_id)).toBeNull();
  });
});
