import { postgresBusKind } from './harness.ts';
import { flowSuite } from './flows-suite.ts';

flowSuite(postgresBusKind);
