import { describe, expect, it } from "vitest";
import { screen } from "@testing-library/react";
import { BusinessTimeZone } from "./BusinessTimeZone";
import { useTimeZone } from "../lib/time";
import { manager, renderWith } from "../test/render";

function Zone() {
  return <span>{useTimeZone()}</span>;
}

describe("BusinessTimeZone", () => {
  it("shows times in the business time zone crm tells the signed-in user, managers included", () => {
    renderWith(
      <BusinessTimeZone>
        <Zone />
      </BusinessTimeZone>,
      { user: { ...manager, business_timezone: "Asia/Tokyo" } },
    );
    expect(screen.getByText("Asia/Tokyo")).toBeTruthy();
  });
});
