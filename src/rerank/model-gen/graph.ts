import type { onnx } from 'onnx-proto';

/** ONNX TensorProto.DataType values (fixed by the ONNX spec). */
export const DType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7 } as const;

/** An attribute value: an integer, a list of integers, or a float (`{ f }`, since 1.0 looks like an integer). */
export type Attr = number | number[] | { f: number };

type Data = Float32Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;

const ATTR_INT = 2;
const ATTR_FLOAT = 1;
const ATTR_INTS = 7;

function dtypeOf(data: Data): number {
  if (data instanceof Float32Array) return DType.FLOAT;
  if (data instanceof Int8Array) return DType.INT8;
  if (data instanceof Uint8Array) return DType.UINT8;
  if (data instanceof Int32Array) return DType.INT32;
  return DType.INT64;
}

/**
 * Collects the nodes and initializers of one graph as plain protobuf-ready objects, naming
 * each intermediate value so that a model reads like the exporter's output in Netron.
 */
export class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  private count = 0;

  /** Adds an initializer; raw little-endian bytes are how exporters store weights. */
  init(name: string, dims: readonly number[], data: Data): string {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializers.push({ name, dims: [...dims], dataType: dtypeOf(data), rawData: bytes });
    return name;
  }

  /** A scalar or 1-d int64 constant. */
  ints(name: string, values: readonly number[], scalar = false): string {
    return this.init(name, scalar ? [] : [values.length], BigInt64Array.from(values, BigInt));
  }

  floats(name: string, values: readonly number[], scalar = false): string {
    return this.init(name, scalar ? [] : [values.length], Float32Array.from(values));
  }

  /** Adds a node and returns its outputs' names (`outputs` of them, named after `prefix`). */
  op(opType: string, inputs: readonly string[], prefix: string, attrs: Record<string, Attr> = {}, outputs = 1): string[] {
    const id = this.count++;
    const out = Array.from({ length: outputs }, (_, i) => (outputs === 1 ? `${prefix}` : `${prefix}_${i}`));
    this.nodes.push({
      name: `${opType}_${id}`,
      opType,
      input: [...inputs],
      output: out,
      attribute: Object.entries(attrs).map(([name, v]) => {
        if (Array.isArray(v)) return { name, type: ATTR_INTS, ints: v };
        if (typeof v === 'object') return { name, type: ATTR_FLOAT, f: v.f };
        return Number.isInteger(v) ? { name, type: ATTR_INT, i: v } : { name, type: ATTR_FLOAT, f: v };
      }),
    });
    return out;
  }

  /** `op` with one output. */
  one(opType: string, inputs: readonly string[], name: string, attrs: Record<string, Attr> = {}): string {
    return this.op(opType, inputs, name, attrs)[0]!;
  }
}

/** A graph input or output declaration; string dims are symbolic (`batch`, `sequence`). */
export function valueInfo(name: string, elemType: number, dims: ReadonlyArray<string | number>): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}
