import type Docker from 'dockerode';
import { cpuPercent, memoryBytes } from '../../runner/stats';

const sample = (cpu: number, preCpu: number, system: number, preSystem: number, cpus: number, usage: number, inactive: number) => ({
  cpu_stats: { cpu_usage: { total_usage: cpu }, system_cpu_usage: system, online_cpus: cpus },
  precpu_stats: { cpu_usage: { total_usage: preCpu }, system_cpu_usage: preSystem },
  memory_stats: { usage, stats: { inactive_file: inactive } },
}) as unknown as Docker.ContainerStats;

test('CPU is the container share of the machine, times CPUs, as docker stats shows it', () => {
  // 0.5 s of CPU over 2 s of machine time on 2 CPUs (4 CPU-seconds of system time) → 25 %.
  expect(cpuPercent(sample(1_500_000_000, 1_000_000_000, 6e9, 2e9, 2, 0, 0))).toBe(25);
  expect(cpuPercent(sample(5, 5, 6e9, 2e9, 2, 0, 0))).toBe(0);
});

test('memory leaves out the inactive page cache', () => {
  expect(memoryBytes(sample(0, 0, 0, 0, 1, 10_000_000, 4_000_000))).toBe(6_000_000);
});
