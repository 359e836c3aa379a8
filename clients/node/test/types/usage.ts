// Type-checked (tsc --noEmit, tests/tests/node_client.rs) against ../../index.d.ts: the
// README's usage compiles, and misuse does not.

import { BreakerRejectedError, ConnectSettingsError, connect, type Decision } from "@fusebox/client";

export async function service(): Promise<number> {
  const fusebox = await connect({ node: "billing-js-1", servers: "nats://127.0.0.1:4222", slowMs: 500 });
  const payments = fusebox.breaker("payments", { classify: ({ ok }) => (ok ? "success" : "failure") });
  const charge = payments.wrap(async (cents: number): Promise<string> => `charged ${cents}`);
  const receipt: string = await charge(250);
  try {
    const permit = payments.allow();
    permit.finish({ result: receipt });
  } catch (error) {
    if (error instanceof BreakerRejectedError) {
      const state: string = error.state;
      void state;
    }
  }
  fusebox.reporter.failure("payments", 3);
  const decision: Decision | null = payments.decision;
  await fusebox.close();
  // @ts-expect-error a permit does not report "rejected"
  payments.allow().report("rejected");
  // @ts-expect-error wrap keeps the argument types
  await charge("lots");
  void ConnectSettingsError;
  return (decision?.id.term ?? 0) + fusebox.reporter.stats().dropped.overflow;
}
