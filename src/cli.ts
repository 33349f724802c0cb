import { Command, InvalidArgumentError, Option } from 'commander';
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';

const BACKENDS = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
    return n;
  };
}

export function buildProgram(): Command {
  const program = new Command('sax-range')
    .description('Cardiac cine MRI short-axis slice-range classification for PACS')
    .showHelpAfterError();
  const backend = () => new Option('--backend <name>', 'tensorflow.js backend').choices(BACKENDS).default('auto');

  program
    .command('phantom')
    .description('write one synthetic cine short-axis study (DICOM files + truth.json)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--seed <n>', 'random seed', int('seed'), 1)
    .option('--slices <n>', 'number of slice positions', int('slices'), 12)
    .option('--phases <n>', 'number of cardiac phases', int('phases'), 25)
    .addOption(new Option('--layout <layout>', 'series layout').choices(['single-series', 'series-per-slice']).default('single-series'))
    .option('--transfer-syntax <uid>', 'transfer syntax UID of the files', '1.2.840.10008.1.2.1')
    .addOption(backend())
    .action(async (o) => {
      const { writePhantomStudy } = await import('./phantom/index.js');
      const { truth, paths } = await writePhantomStudy(o.out, {
        seed: o.seed,
        slices: o.slices,
        phases: o.phases,
        layout: o.layout,
        transferSyntax: o.transferSyntax,
      });
      console.log(
        JSON.stringify({ out: o.out, files: paths.length, studyInstanceUID: truth.studyInstanceUID, ed: truth.ed, es: truth.es, labels: truth.labels }),
      );
    });

  program
    .command('serve')
    .description('run the DICOM SCP, the workers and the HTTP API (roles: SAX_RANGE_ROLES)')
    .option('--config <file>', 'config file (JSON); environment variables override it')
    .addOption(backend())
    .action(async (o, cmd: Command) => {
      const logger = createLogger();
      // --backend given on the command line wins over SAX_RANGE_BACKEND and the file; its default does not.
      const cliBackend = cmd.getOptionValueSource('backend') === 'cli' ? { backend: o.backend } : {};
      const config = loadConfig({ file: o.config, overrides: cliBackend });
      const { startService } = await import('./main.js');
      const service = await startService(config, logger);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'shutting down: finishing in-flight work');
        await service.close();
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
      // A machine-readable line for scripts and tests that start the service on ephemeral ports.
      console.log(JSON.stringify({ event: 'listening', dicomPort: service.dicomPort ?? null, httpPort: service.httpPort ?? null }));
    });

  program
    .command('demo')
    .description('generate a phantom study, send it over DICOM to an in-process service and show what it made of it')
    .option('--out <dir>', 'folder for the demo files (default: a new temp folder)')
    .option('--seed <n>', 'phantom seed', int('seed'), 1)
    .option('--model <dir>', 'model directory (default: SAX_RANGE_MODEL_DIR or models/default)')
    .addOption(backend())
    .action(async (o) => {
      if (o.backend !== 'auto') process.env.SAX_RANGE_BACKEND = o.backend;
      const { runDemo } = await import('./demo.js');
      await runDemo({ out: o.out, seed: o.seed, modelDir: o.model });
    });

  const defaultModel = () => process.env.SAX_RANGE_MODEL_DIR ?? 'models/default';

  program
    .command('classify')
    .description('classify the cine short-axis stacks in DICOM files/folders without a server')
    .argument('<paths...>', 'DICOM files or folders (searched recursively)')
    .option('--model <dir>', 'model directory (default: SAX_RANGE_MODEL_DIR or models/default)')
    .option('--out <dir>', 'write <stackId>.json and the SR, SC and KOS files here')
    .option('--json', 'print the JSON array of result documents on stdout', false)
    .option('--threads <n>', 'inference threads (one tfjs backend each)', int('threads'), 1)
    .addOption(backend())
    .action(async (paths: string[], o) => {
      const { runClassify } = await import('./commands/classify.js');
      const { writeStackOutputs } = await import('./pipeline/outputs.js');
      const { join } = await import('node:path');
      await runClassify({
        paths,
        modelDir: o.model ?? defaultModel(),
        out: o.out,
        json: o.json,
        threads: o.threads,
        backend: o.backend,
        logger: createLogger(),
        writeOutputs: async (ctx) => (await writeStackOutputs({ ...ctx, dir: join(ctx.outDir, ctx.stack.stackId) })).refs,
      });
    });

  program
    .command('predict')
    .description('per-slice predictions as CSV: subject,phase,slice,p_oap,p_in,p_obs,predicted,label')
    .requiredOption('--dataset <spec>', 'dataset, e.g. acdc:DIR')
    .option('--model <dir>', 'model directory (default: SAX_RANGE_MODEL_DIR or models/default)')
    .requiredOption('--out <file>', 'CSV file to write')
    .option('--threads <n>', 'inference threads', int('threads'), 1)
    .addOption(backend())
    .action(async (o) => {
      const { runPredict } = await import('./commands/predict.js');
      const summary = await runPredict({ dataset: o.dataset, modelDir: o.model ?? defaultModel(), out: o.out, threads: o.threads, backend: o.backend, logger: createLogger() });
      console.log(JSON.stringify(summary));
    });

  program
    .command('fit-decoding')
    .description("fit range decoding's class log-prior on a training run's out-of-fold predictions (cv-predictions.csv), report its nested-CV estimate, and with --write store it in the model card")
    .requiredOption('--predictions <file>', 'cv-predictions.csv of `sax-range train`')
    .option('--model <dir>', 'model directory whose card gets the prior (with --write)')
    .option('--write', "write the prior into the model card's decoding section", false)
    .option('--fitted-on <text>', "the card's decoding.fittedOn (default: names the predictions file)")
    .addOption(backend().hideHelp()) // every command takes it (DESIGN); fitting runs no model
    .action(async (o) => {
      const { runFitDecoding } = await import('./commands/fit-decoding.js');
      console.log(JSON.stringify(await runFitDecoding({ predictions: o.predictions, modelDir: o.model, write: o.write, fittedOn: o.fittedOn }), null, 1));
    });

  program
    .command('train')
    .description('train with a protocol (patient-level cross-validation, then a final model) and write the model dir and report; a grid protocol (paper.json, quick.json) runs every cell')
    .requiredOption('--protocol <file>', 'protocol JSON (config/protocols/*.json): one run, or a grid')
    .requiredOption('--dataset <spec>', 'acdc:DIR, dicom:DIR, labels:[DIR], phantom:COUNT[:SEED], joined with +')
    .requiredOption('--out <dir>', 'output folder (one run: model/, cv.json, report.md, checkpoints/; a grid: run.json, cells/<id>/)')
    .option('--resume', 'continue the run in <out> after an interruption', false)
    .option('--workers <n>', 'folds trained at once (worker threads)', int('workers'))
    .option('--test-dataset <spec>', "grid with heldOutTest 'test-dataset': the held-out test subjects")
    .option('--weights-dir <dir>', 'grid: folder of the Keras *_notop.h5 ImageNet weights (overrides the protocol weightsDir)')
    .option('--progress-seconds <n>', 'grid: seconds between grid progress lines', int('progress-seconds'), 60)
    .addOption(backend())
    .action(async (o) => {
      const { runTraining } = await import('./training/train.js');
      const logger = createLogger();
      const { loadProtocolFile } = await import('./training/protocol.js');
      if ((await loadProtocolFile(o.protocol)).kind === 'grid') {
        const { runGrid } = await import('./training/grid.js');
        const g = await runGrid({
          protocol: o.protocol,
          dataset: o.dataset,
          testDataset: o.testDataset,
          out: o.out,
          weightsDir: o.weightsDir,
          backend: o.backend,
          resume: o.resume,
          workers: o.workers,
          progressSeconds: o.progressSeconds,
          logger,
        });
        console.log(JSON.stringify({ out: o.out, cells: g.cells.map((c) => ({ id: c.id, status: c.status, selectedEpoch: c.result.final.epochs, testAccuracy: c.result.test?.summary.all.argmax.accuracy ?? null })) }));
        return;
      }
      if (o.testDataset || o.weightsDir) throw new Error('--test-dataset and --weights-dir are for grid protocols');
      const r = await runTraining({ protocol: o.protocol, dataset: o.dataset, out: o.out, backend: o.backend, resume: o.resume, workers: o.workers, logger });
      console.log(JSON.stringify({ out: o.out, model: r.modelDir ?? null, selectedEpoch: r.selectedEpoch, cvFoldMean: r.cv?.foldMean ?? null }));
    });

  program
    .command('evaluate')
    .description('measure a model on a labelled dataset: evaluation.json (all metrics, ED and ES apart), predictions.csv, summary.md')
    .option('--model <dir>', 'model directory (default: SAX_RANGE_MODEL_DIR or models/default)')
    .requiredOption('--dataset <spec>', 'acdc:DIR, dicom:DIR, labels:[DIR], phantom:COUNT[:SEED], joined with +')
    .requiredOption('--out <dir>', 'output folder')
    .addOption(backend())
    .action(async (o) => {
      const { runEvaluate } = await import('./commands/evaluate.js');
      const doc = await runEvaluate({ modelDir: o.model ?? defaultModel(), dataset: o.dataset, out: o.out, backend: o.backend, logger: createLogger() });
      const m = doc.metrics.all;
      console.log(JSON.stringify({ out: o.out, stacks: doc.stacks, images: doc.images, accuracy: m.accuracy, softAccuracy: m.softAccuracy, microAuc: m.microAuc, rangeExactDecoded: m.rangeExact.decoded, seenInTraining: doc.seenInTraining }));
    });

  program
    .command('report')
    .description('the training report of a grid run folder: index.html with PNG figures (Tables 1 and 2, training curves, confusion matrices, t-SNE, Grad-CAM grid)')
    .requiredOption('--run <dir>', 'run folder (run.json, cells/<id>/)')
    .option('--out <dir>', 'output folder (default <run>/report)')
    .addOption(backend().hideHelp()) // every command takes it (DESIGN); the report runs no model
    .action(async (o) => {
      const { buildReport } = await import('./training/report/index.js');
      const r = await buildReport({ run: o.run, out: o.out, log: (line) => process.stderr.write(`${line}\n`) });
      console.log(JSON.stringify({ html: r.html, json: r.json, figures: r.figures.length, cells: r.cells.length }));
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError || ['NO_STACK', 'BAD_INPUT'].includes((err as { code?: string }).code ?? '')) {
      console.error(`sax-range: ${(err as Error).message}`);
      process.exit(2);
    }
    console.error(`sax-range: ${(err as Error).stack ?? err}`);
    process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main(process.argv);
}
