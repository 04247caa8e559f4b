// The declared type of everything jobwerk returns or emits, by name, for the
// runtime shape check in __test__/types.spec.js (read with the TypeScript
// compiler API; not run).

import { JobManagementService, JobManagementEvents, nextCronRuns } from '../../index'

type Ret<K extends keyof JobManagementService> = JobManagementService[K] extends (...args: any[]) => infer R ? Awaited<R> : never
type Ev<K extends keyof JobManagementEvents> = JobManagementEvents[K][0]

export interface Shapes {
  getSystemStatus: Ret<'getSystemStatus'>
  getSystemHealth: Ret<'getSystemHealth'>
  getJobExecutionSummary: Ret<'getJobExecutionSummary'>
  getPerformanceMetrics: Ret<'getPerformanceMetrics'>
  getQueueTrends: Ret<'getQueueTrends'>
  getQueueStatistics: Ret<'getQueueStatistics'>
  getActiveAlerts: Ret<'getActiveAlerts'>
  getAlertHistory: Ret<'getAlertHistory'>
  getAlertRules: Ret<'getAlertRules'>
  getScheduledJobs: Ret<'getScheduledJobs'>
  getJobStatus: Ret<'getJobStatus'>
  stop: Ret<'stop'>
  nextCronRuns: ReturnType<typeof nextCronRuns>
  completed: Ev<'completed'>
  failed: Ev<'failed'>
  retrying: Ev<'retrying'>
  timedOut: Ev<'timedOut'>
  cancelled: Ev<'cancelled'>
  progress: Ev<'progress'>
  alert: Ev<'alert'>
  alertResolved: Ev<'alertResolved'>
}
