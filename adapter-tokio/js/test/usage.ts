// Exercises the whole declared API with correct types. Type-checked (not run) with
//   tsc --strict --noEmit --target es2022 --module es2022 --moduleResolution bundler test/usage.ts
import {
  Client,
  RoomHandle,
  CloseCode,
  ErrorCode,
  PROTOCOL_VERSION,
  SUBPROTOCOL,
  MAX_SAFE_INTEGER,
  MAX_HELLO_ROOMS,
  MAX_BATCH_EVENTS,
  MAX_POLL_FRAMES,
  MAX_POLL_BODY,
  FRAME_KINDS,
  errorName,
  shouldReconnect,
  wsCloseCode,
  isValidName,
  utf8Length,
  decodeFrame,
  encodeFrame,
  EventwireError,
  ProtocolError,
  ValidationError,
  OutboxFullError,
  FrameTooLargeError,
  TooManyRoomsError,
  ClientClosedError,
  PublishRejectedError,
  Backoff,
  RttEstimator,
  LinkQuality,
  Outbox,
  RateMeter,
} from '../eventwire.js';
import type {
  ClientOptions,
  Position,
  Positions,
  RoomEvent,
  EventHandler,
  Gap,
  Missed,
  Status,
  State,
  Quality,
  ErrorReport,
  PositionStorage,
  BackoffOptions,
  QualityOptions,
  Clock,
  WebSocketLike,
  WebSocketConstructor,
  FetchLike,
  ClientStats,
  Frame,
  FrameType,
  UnknownFrame,
  Resume,
  BatchEvent,
} from '../eventwire.js';

interface TaskQueued {
  task_id: string;
  priority: number;
}

const storage: PositionStorage = {
  load: (): Positions | null => {
    const text = globalThis.sessionStorage?.getItem('positions');
    return text ? (JSON.parse(text) as Positions) : null;
  },
  save: (positions: Positions): void => {
    globalThis.sessionStorage?.setItem('positions', JSON.stringify(positions));
  },
};

const backoff: BackoffOptions = { initial: 250, factor: 2, cap: 30000, maxAttempts: null, stableAfter: 10000 };
const quality: QualityOptions = { degradedRtt: 300, poorRtt: 1000, recoverPercent: 80, poorAfterMissed: 2 };
const clock: Clock = { now: () => performance.now(), setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as number) };
const wsCtor: WebSocketConstructor | undefined = globalThis.WebSocket as unknown as WebSocketConstructor | undefined;
const fetchFn: FetchLike = (url, init) => fetch(url, init);

const options: ClientOptions = {
  rooms: { agents: { epoch: 1, offset: 10 }, tasks: null, system: null },
  token: 'eyJhbGciOiJIUzI1NiJ9.e30.sig',
  clientId: 12345,
  transports: 'auto',
  pollUrl: 'http://127.0.0.1:9001/eventwire/poll',
  fallbackAfter: 3,
  upgradeInterval: 30000,
  backoff,
  quality,
  connectTimeout: 10000,
  maxFrame: 65536,
  maxBatch: 50,
  outboxLimit: 256,
  publishWindow: 32,
  maxRooms: 1024,
  maxQueued: 1024,
  deadAfter: 3,
  storage,
  fetch: fetchFn,
  clock,
  random: Math.random,
};
if (wsCtor) options.WebSocket = wsCtor;

const client = new Client('ws://127.0.0.1:9001/', options);
const other = new Client('ws://127.0.0.1:9001/', { rooms: ['agents', 'tasks'] });

const offKind: () => void = client.on<TaskQueued>('task.queued', (payload, event) => {
  const id: string = payload.task_id;
  const p: number = payload.priority;
  const ev: RoomEvent<TaskQueued> = event;
  const pos: Position = ev.position;
  console.log(id, p, ev.room, ev.kind, pos.epoch, pos.offset);
});
const all: EventHandler = (payload: unknown, event: RoomEvent) => console.log(payload, event.room);
client.on('*', all);
offKind();

const tasks: RoomHandle = client.room('tasks');
const name: string = tasks.name;
const offRoom = tasks.on('*', (_payload, event) => console.log(name, event.position.offset));
const tp: Position | null = tasks.position();
console.log(tp);
offRoom();
const left: boolean = tasks.unsubscribe();

client.onGap((gap: Gap) => {
  const missed: Missed = gap.missed;
  if ('range' in missed) {
    const { epoch, first, last } = missed.range;
    console.log(gap.room, epoch, first, last);
  } else {
    const reset: Position = missed.reset.position;
    console.log(gap.room, reset.epoch, reset.offset);
  }
});

client.onStatus((status: Status) => {
  const state: State = status.state;
  const q: Quality = status.quality;
  const transport: 'websocket' | 'polling' | null = status.transport;
  const rtt: number | null = status.rtt;
  const eps: number = status.eventsPerSecond;
  const attempt: number = status.attempt;
  const retry: number | null = status.retryInMs;
  const close: { readonly code: number; readonly reason: string } | null = status.lastClose;
  console.log(state, q, transport, rtt, eps, attempt, retry, close?.code, close?.reason);
});

client.onError((err: ErrorReport) => {
  const code: number = err.code;
  console.log(code, err.name, err.reason, err.room ?? '-', err.id ?? 0, err.error);
});

client.subscribe('notes');
client.subscribe('alerts', { epoch: 2, offset: 0 });
client.subscribe('more', null);
const was: boolean = client.unsubscribe('alerts');
const positions: Positions = client.positions();
const status: Status = client.status;
const id: number = client.clientId;
const stats: ClientStats = client.stats();
console.log(left, was, positions, status, id, stats.events, stats.duplicates, stats.gaps, stats.sessions, stats.outbox);

async function publishSome(): Promise<void> {
  try {
    const at: Position = await client.publish('notes', 'note', { text: 'hello' });
    console.log(at.epoch, at.offset);
  } catch (e) {
    if (e instanceof OutboxFullError) console.log(e.limit);
    else if (e instanceof FrameTooLargeError) console.log(e.size, e.limit);
    else if (e instanceof PublishRejectedError) console.log(e.id, e.code, e.errorName, e.reason);
    else if (e instanceof ClientClosedError) console.log(e.message);
    else if (e instanceof ValidationError) console.log(e.field);
  }
}
void publishSome();

try {
  client.subscribe('not valid');
} catch (e) {
  if (e instanceof ValidationError) console.log(e.field, e instanceof TypeError);
  if (e instanceof TooManyRoomsError) console.log(e.limit);
  if (e instanceof EventwireError) console.log(e.name);
}

client.close();
other.close();

// The codec.
const frame: Frame | UnknownFrame = decodeFrame('{"ping":{"nonce":1}}', { maxFrame: 1024 });
if (frame.type === 'unknown') {
  console.log(frame.name);
} else {
  const type: FrameType = frame.type;
  console.log(type, encodeFrame(frame));
  if (frame.type === 'batch') {
    const events: BatchEvent[] = frame.events;
    console.log(events.map((e) => [e.offset, e.kind, e.payload, e.payloadText]));
  }
  if (frame.type === 'hello') {
    const rooms: Resume[] = frame.rooms;
    console.log(rooms.map((r) => [r.room, r.from?.offset]));
  }
}
const text: string = encodeFrame({ type: 'subscribe', room: 'tasks', from: { epoch: 3, offset: 120 } });
try {
  decodeFrame(text.slice(1));
} catch (e) {
  if (e instanceof ProtocolError) console.log(e.closeCode === CloseCode.PROTOCOL_ERROR);
}

// Constants and helpers.
const codes: number[] = [CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.MESSAGE_TOO_BIG, CloseCode.UNAUTHORIZED, ErrorCode.RATE_LIMITED, ErrorCode.PUBLISH_REJECTED];
console.log(codes, PROTOCOL_VERSION, SUBPROTOCOL, MAX_SAFE_INTEGER, MAX_HELLO_ROOMS, MAX_BATCH_EVENTS, MAX_POLL_FRAMES, MAX_POLL_BODY, FRAME_KINDS);
const nm: string = errorName(ErrorCode.FORBIDDEN_ROOM);
const again: boolean = shouldReconnect(CloseCode.GOING_AWAY);
const wsCode: number = wsCloseCode(CloseCode.PROTOCOL_ERROR);
const maybe: unknown = 'tasks';
if (isValidName(maybe)) {
  const checked: string = maybe;
  console.log(checked.length, utf8Length(checked));
}
console.log(nm, again, wsCode);

// The machine's parts.
const b = new Backoff(backoff, () => 0.5);
const delay: number | null = b.nextDelay(2000);
b.connectionEnded(10000);
b.reset();
console.log(delay, b.attempts, b.baseDelay(3), b.policy.cap);
const rttEstimator = new RttEstimator();
rttEstimator.sample(42);
const srtt: number | null = rttEstimator.srtt;
const link = new LinkQuality(quality);
const changed: Quality | null = link.onPong(120) ?? link.onMissedPong();
console.log(srtt, rttEstimator.rttvar, changed, link.level, link.missed, link.rtt.samples);
const outbox = new Outbox<string>(4);
const first: number = outbox.push('a');
const next: { id: number; data: string } | null = outbox.nextToSend(0, 32);
outbox.defer(first, 100);
outbox.requeue();
const taken: string | undefined = outbox.take(first);
const rest: string[] = outbox.drain();
console.log(next, taken, rest, outbox.size, outbox.inFlight, outbox.nextDeadline());
const meter = new RateMeter();
meter.add(0, 3);
const perSecond: number = meter.rate(500);
console.log(perSecond);

// A test double satisfies WebSocketLike.
const fake: WebSocketLike = {
  protocol: SUBPROTOCOL,
  send: (data: string) => console.log(data),
  close: (code?: number) => console.log(code),
  onopen: null,
  onmessage: null,
  onclose: null,
  onerror: null,
};
console.log(fake.protocol);
