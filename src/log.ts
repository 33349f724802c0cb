import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * The one logger factory. JSON lines on stderr (stdout stays free for CLI output such as --json).
 * Log UIDs, never patient names or IDs: the redact list is a safety net, not the policy.
 * `destination` replaces stderr (tests capture the log lines with it).
 */
export function createLogger(name = 'sax-range', level = process.env.LOG_LEVEL ?? 'info', destination?: DestinationStream): Logger {
  return pino(
    {
      name,
      level,
      redact: {
        paths: ['PatientName', 'PatientID', '*.PatientName', '*.PatientID', 'patientName', 'patientId'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination(2),
  );
}

export type { Logger };
