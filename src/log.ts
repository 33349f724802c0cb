import { pino, type Logger } from 'pino';

/**
 * The one logger factory. JSON lines on stderr (stdout stays free for CLI output such as --json).
 * Log UIDs, never patient names or IDs: the redact list is a safety net, not the policy.
 */
export function createLogger(name = 'sax-range', level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      name,
      level,
      redact: {
        paths: ['PatientName', 'PatientID', '*.PatientName', '*.PatientID', 'patientName', 'patientId'],
        censor: '[redacted]',
      },
    },
    pino.destination(2),
  );
}

export type { Logger };
