import { describeWithServer, kafkaBrokers, kafkaSkipReason } from '../../test/support.ts';
import { flowSuite } from './flows-suite.ts';
import { kafkaBusKind } from './harness.ts';
import { webhookSuite } from './webhooks-suite.ts';

/** The same webhook and flow suites, with the events reaching the runners through Kafka (relay → topic → consumer groups). */
describeWithServer('kafka', 'connector runners on the Kafka bus', kafkaBrokers(), kafkaSkipReason(), (brokers) => {
  const kind = kafkaBusKind(brokers.split(','));
  webhookSuite(kind);
  flowSuite(kind);
});
