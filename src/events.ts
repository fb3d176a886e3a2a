/** Progress events emitted by long-running library code (which never prints). Commands render them. */
export type Stage = 'teacher' | 'distill' | 'eval' | 'export' | 'data';

export type ProgressEvent =
  | { type: 'stage-start'; stage: Stage; label: string; total: number; startAt: number; backend: string; /** what `total` counts (default 'updates') */ unit?: string }
  | { type: 'step'; stage: Stage; label: string; step: number; total: number; loss: number; lr: number; itPerSec: number }
  | { type: 'checkpoint'; stage: Stage; path: string; step: number }
  | { type: 'stage-end'; stage: Stage; label: string; seconds: number; summary: string }
  | { type: 'info'; message: string };

export type OnEvent = (e: ProgressEvent) => void;
export const noEvents: OnEvent = () => {};
