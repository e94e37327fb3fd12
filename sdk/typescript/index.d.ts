// Types of bosun-hooks: every field of the hook protocol's requests and responses
// (Metacontroller's JSON), and the SDK's functions.

/** A Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
  deletionTimestamp?: string;
  [field: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** A label selector: `matchLabels` and `matchExpressions`. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

/** A CompositeController or DecoratorController, as the engine sends it. */
export interface Controller extends KubeObject {
  spec: Record<string, unknown>;
}

/** The raw object maps of a request: `Kind.apiVersion` → key → object. */
export type RawObjectMap = Record<string, Record<string, KubeObject>>;

/** The JSON the engine sends a CompositeController's sync or finalize hook. */
export interface CompositeRequestJson {
  controller: Controller;
  parent: KubeObject;
  children: RawObjectMap;
  related: RawObjectMap;
  finalizing: boolean;
}

/** The JSON the engine sends a DecoratorController's sync or finalize hook. */
export interface DecoratorRequestJson {
  controller: Controller;
  object: KubeObject;
  attachments: RawObjectMap;
  related: RawObjectMap;
  finalizing: boolean;
}

/** The JSON the engine sends a customize hook. */
export interface CustomizeRequestJson {
  controller: Controller;
  parent: KubeObject;
}

/** Objects by type, then by key (the name, or `namespace/name`). */
export declare class ObjectMap {
  constructor(raw: RawObjectMap | undefined, namespace: string | undefined);
  readonly raw: RawObjectMap;
  readonly namespace: string | undefined;
  /** The objects of one type, by key. */
  of(kind: string, apiVersion: string): Record<string, KubeObject>;
  /** The object of that type and name (in `namespace`, by default the parent's), whatever the key form. */
  get(kind: string, apiVersion: string, name: string, namespace?: string): KubeObject | undefined;
  /** Every object, of every type. */
  objects(): KubeObject[];
  toJSON(): RawObjectMap;
}

export interface CompositeRequest {
  type: "composite";
  controller: Controller;
  parent: KubeObject;
  children: ObjectMap;
  related: ObjectMap;
  finalizing: boolean;
  /** The parent's name and namespace. */
  name: string;
  namespace: string | undefined;
}

export interface DecoratorRequest {
  type: "decorator";
  controller: Controller;
  object: KubeObject;
  attachments: ObjectMap;
  related: ObjectMap;
  finalizing: boolean;
  /** The target's name and namespace. */
  name: string;
  namespace: string | undefined;
}

export interface CustomizeRequest {
  type: "customize";
  controller: Controller;
  parent: KubeObject;
}

export type Request = CompositeRequest | DecoratorRequest;

/** An event the engine records on the parent (bosun's extension). */
export interface HookEvent {
  type?: "Normal" | "Warning";
  /** One word, at most 128 characters. */
  reason: string;
  message: string;
}

/** A CompositeController hook's answer: every child the parent should have (one left out is deleted). */
export interface CompositeResponse {
  status?: Record<string, unknown> | null;
  children?: Partial<KubeObject>[];
  resyncAfterSeconds?: number;
  finalized?: boolean;
  events?: HookEvent[];
}

/** A DecoratorController hook's answer: labels and annotations for the target (null removes one), its status, its attachments. */
export interface DecoratorResponse {
  labels?: Record<string, string | null>;
  annotations?: Record<string, string | null>;
  status?: Record<string, unknown> | null;
  attachments?: Partial<KubeObject>[];
  resyncAfterSeconds?: number;
  finalized?: boolean;
  events?: HookEvent[];
}

/** One rule of a customize answer. */
export interface RelatedRule {
  apiVersion: string;
  resource: string;
  labelSelector?: LabelSelector;
  names?: string[];
  namespace?: string;
}

export interface CustomizeResponse {
  relatedResources: RelatedRule[];
}

export type Awaitable<T> = T | Promise<T>;

export declare class ProtocolError extends Error {}

export declare function groupKey(kind: string, apiVersion: string): string;
export declare function parseRequest(input: string | Uint8Array | CompositeRequestJson | DecoratorRequestJson): Request;
export declare function parseCustomizeRequest(input: string | Uint8Array | CustomizeRequestJson): CustomizeRequest;

/** An AdmissionController's validate or mutate request (docs/admission.md). */
export interface AdmissionRequest {
  type: "admission";
  operation: "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
  object: KubeObject | null;
  oldObject: KubeObject | null;
  kind: { group: string; version: string; kind: string };
  resource: { group: string; version: string; resource: string };
  subResource?: string;
  name: string;
  namespace?: string;
  userInfo: { username?: string; groups?: string[]; [key: string]: unknown };
  dryRun: boolean;
  controller: KubeObject;
}

/** A validate or mutate hook's answer: `allowed: false` refuses with `message`; a mutate hook returns `object` (or a JSON `patch`). */
export interface AdmissionResponse {
  allowed?: boolean;
  message?: string;
  warnings?: string[];
  object?: KubeObject;
  patch?: Array<{ op: string; path: string; value?: unknown; from?: string }>;
}

/** An AdmissionController's convert request. */
export interface ConversionRequest {
  type: "conversion";
  desiredAPIVersion: string;
  objects: KubeObject[];
  controller: KubeObject;
}

/** A convert hook's answer: the objects in `desiredAPIVersion`, in order, or `message` to refuse. */
export interface ConversionResponse {
  objects?: KubeObject[];
  message?: string;
}

export declare function parseAdmissionRequest(input: string | Uint8Array | object): AdmissionRequest;
export declare function parseConversionRequest(input: string | Uint8Array | object): ConversionRequest;
export declare function allow(...warnings: string[]): AdmissionResponse;
export declare function deny(message: string, ...warnings: string[]): AdmissionResponse;
/** A child object; `options` holds labels, annotations and the other top-level fields (spec, data, …). */
export declare function child(
  apiVersion: string,
  kind: string,
  name: string,
  options?: { labels?: Record<string, string>; annotations?: Record<string, string>; [field: string]: unknown },
): KubeObject;
/** `<parent>-<suffix>` as a DNS-1123 label, shortened with a hash when longer than `maxLength` (63). */
export declare function ownerSafeName(parent: KubeObject, suffix?: string, maxLength?: number): string;
export declare function labelsFor(parent: KubeObject, extra?: Record<string, string>): Record<string, string>;
/** What the engine would refuse in `response` to `request` (empty: nothing). */
export declare function checkResponse(request: Request, response: CompositeResponse | DecoratorResponse): string[];

export interface RunningServer {
  port: number;
  /** `http://address:port`, without a path. */
  url: string;
  /** Stops taking connections; resolves once the calls in flight are answered. */
  stop(): Promise<void>;
}

export declare class HookServer {
  sync(handler: (request: Request) => Awaitable<CompositeResponse | DecoratorResponse>): this;
  finalize(handler: (request: Request) => Awaitable<CompositeResponse | DecoratorResponse>): this;
  customize(handler: (request: CustomizeRequest) => Awaitable<CustomizeResponse>): this;
  validate(handler: (request: AdmissionRequest) => Awaitable<AdmissionResponse>): this;
  mutate(handler: (request: AdmissionRequest) => Awaitable<AdmissionResponse>): this;
  convert(handler: (request: ConversionRequest) => Awaitable<ConversionResponse>): this;
  route<T>(path: string, handler: (request: T) => Awaitable<unknown>, parse?: (input: Uint8Array) => T): this;
  /** Answers one call as an exec hook: stdin to the hook at `path` (default `/sync`) to stdout; resolves to the exit status (0, or 1 when it fails). */
  runOnce(path?: string, streams?: { stdin?: AsyncIterable<Uint8Array | string>; stdout?: { write(chunk: string, done: () => void): unknown } }): Promise<number>;
  start(options?: { port?: number; address?: string }): Promise<RunningServer>;
  serve(options?: { port?: number; address?: string }): Promise<void>;
}

/** A recorded exchange: `bosun hook test --save`, or the shared protocol vectors. */
export interface Vector {
  name: string;
  request: CompositeRequestJson | DecoratorRequestJson;
  response: unknown;
  expect: { hook?: string; outcome?: "Synced" | "Failed"; message?: string; requeueAfterSeconds?: number; writes?: unknown[] };
  customizeRequest?: CustomizeRequestJson;
  customizeResponse?: CustomizeResponse;
  refused: boolean;
}

export declare function loadVectors(directory: string): Vector[];
/** Replays each accepted vector's request through `handler`; returns what differs from the recording. */
export declare function runVectors(handler: (request: Request) => Awaitable<unknown>, directory: string): Promise<string[]>;
