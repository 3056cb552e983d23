// The live view of one order: GET /v1/orders/{id}/stream through the
// browser's EventSource, which reconnects by itself and resumes with
// Last-Event-ID, so no change is lost while it is away.

import { orderPath, token } from './api.js';

/** The event names the stream sends: the snapshot, then one per change type. */
const EVENTS = ['snapshot', 'created', 'item-added', 'item-removed', 'submitted', 'cancelled'];

/**
 * watch opens the live view of order id. onEvent(name, data) is called per
 * event (data: {version, type, data?, time?, order?}); onState(state) with
 * "connecting", "live", "reconnecting" or "closed". It returns a function
 * that closes the stream.
 */
export function watch(id, { onEvent, onState }) {
  // EventSource sends no headers: the token goes as access_token, which the
  // gateway takes on this route only.
  const source = new EventSource(`${orderPath(id, '/stream')}?access_token=${encodeURIComponent(token())}`);
  onState('connecting');
  source.addEventListener('open', () => onState('live'));
  source.addEventListener('error', () => {
    // CONNECTING: the browser retries by itself (with Last-Event-ID);
    // CLOSED: the gateway refused the stream (an unknown order, say).
    onState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  });
  for (const name of EVENTS) {
    source.addEventListener(name, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return; // not ours
      }
      onEvent(name, data);
    });
  }
  return () => {
    source.close();
    onState('closed');
  };
}
