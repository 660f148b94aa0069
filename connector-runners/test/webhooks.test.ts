import { postgresBusKind } from './harness.ts';
import { webhookSuite } from './webhooks-suite.ts';

webhookSuite(postgresBusKind);
