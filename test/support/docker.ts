import Docker from 'dockerode';

/**
 * Removes containers left on the shared engine by an earlier, interrupted run under the names this test is about to
 * use (`fz-<release>-<n>`): container names are unique per engine, and a runner never touches a container it does
 * not own, so a leftover would block the test's own deploy.
 */
export async function clearReleaseNames(docker: Docker, ...releaseNames: string[]): Promise<void> {
  const all = await docker.listContainers({ all: true });
  const stale = all.filter((c) => c.Names.some((n) => releaseNames.some((r) => new RegExp(`^/fz-${r}-\\d+$`).test(n))));
  await Promise.all(stale.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
}
