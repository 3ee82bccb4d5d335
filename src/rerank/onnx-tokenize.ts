/**
 * What is used of `@huggingface/tokenizers`: its published typings use extension-less relative
 * imports that NodeNext resolution cannot follow, so the shape is stated here (as in
 * src/embed/onnx.ts).
 */
export interface TextTokenizer {
  encode(text: string, opts?: { add_special_tokens?: boolean }): { ids: number[] };
  token_to_id(token: string): number | undefined;
}

/** One (query, candidate) pair as the model reads it. */
export interface EncodedPair {
  ids: number[];
  typeIds: number[];
}

type Part = { special: number[]; type: number } | { seq: 'A' | 'B'; type: number };

/**
 * The pair template of the tokenizer's post-processor, read from tokenizer.json rather than
 * assumed, so BERT (`[CLS] A [SEP] B [SEP]`) and RoBERTa-style (`<s> A </s></s> B </s>`)
 * cross-encoders both get the layout they were trained on.
 */
export function pairTemplate(postProcessor: unknown, tokenizer: TextTokenizer): Part[] {
  const p = (postProcessor ?? null) as Record<string, unknown> | null;
  const idOf = (entry: unknown): number[] => {
    const [token, id] = Array.isArray(entry) ? (entry as [string, number]) : [String(entry), undefined];
    const found = typeof id === 'number' ? id : tokenizer.token_to_id(token);
    if (found === undefined) throw new Error(`post-processor token ${token} is not in the vocabulary`);
    return [found];
  };
  switch (p?.type) {
    case 'TemplateProcessing': {
      const specials = (p.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
      return (p.pair as Array<Record<string, { id: string; type_id?: number }>>).map((item) => {
        if (item.SpecialToken) {
          const ids = specials[item.SpecialToken.id]?.ids ?? idOf(item.SpecialToken.id);
          return { special: ids, type: item.SpecialToken.type_id ?? 0 };
        }
        if (item.Sequence) return { seq: item.Sequence.id === 'B' ? 'B' : 'A', type: item.Sequence.type_id ?? 0 };
        throw new Error(`unknown pair template item ${JSON.stringify(item)}`);
      });
    }
    case 'BertProcessing': {
      const cls = idOf(p.cls);
      const sep = idOf(p.sep);
      return [{ special: cls, type: 0 }, { seq: 'A', type: 0 }, { special: sep, type: 0 }, { seq: 'B', type: 1 }, { special: sep, type: 1 }];
    }
    case 'RobertaProcessing': {
      const cls = idOf(p.cls);
      const sep = idOf(p.sep);
      return [{ special: cls, type: 0 }, { seq: 'A', type: 0 }, { special: [...sep, ...sep], type: 0 }, { seq: 'B', type: 0 }, { special: sep, type: 0 }];
    }
    case 'Sequence': {
      const inner = (p.processors as unknown[]).find((q) => ['TemplateProcessing', 'BertProcessing', 'RobertaProcessing'].includes((q as { type?: string }).type ?? ''));
      return inner ? pairTemplate(inner, tokenizer) : [{ seq: 'A', type: 0 }, { seq: 'B', type: 0 }];
    }
    default:
      return [{ seq: 'A', type: 0 }, { seq: 'B', type: 0 }];
  }
}

/**
 * How many tokens of each side survive `budget`, as the `longest_first` strategy of Hugging
 * Face tokenizers decides: the shorter side keeps up to half the budget, the longer the rest.
 */
export function longestFirst(a: number, b: number, budget: number): [number, number] {
  if (a + b <= budget) return [a, b];
  const half = Math.floor(budget / 2);
  if (a <= b) {
    const keepA = Math.min(a, half);
    return [keepA, budget - keepA];
  }
  const keepB = Math.min(b, half);
  return [budget - keepB, keepB];
}

export interface PairEncoder {
  /** Tokens of a whole pair at most. */
  readonly maxLength: number;
  /** Token ids of a text without special tokens. */
  tokens(text: string): number[];
  /** Assembles a pair from both sides' tokens, truncated to `maxLength`. */
  pair(query: readonly number[], text: readonly number[]): EncodedPair;
}

export function pairEncoder(tokenizer: TextTokenizer, postProcessor: unknown, maxLength: number): PairEncoder {
  const template = pairTemplate(postProcessor, tokenizer);
  const specials = template.reduce((n, p) => n + ('special' in p ? p.special.length : 0), 0);
  const budget = maxLength - specials;
  if (budget < 2) throw new Error(`max length ${maxLength} leaves no room for text after ${specials} special tokens`);
  return {
    maxLength,
    tokens: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    pair(query, text) {
      const [keepA, keepB] = longestFirst(query.length, text.length, budget);
      const ids: number[] = [];
      const typeIds: number[] = [];
      for (const part of template) {
        const src = 'special' in part ? part.special : part.seq === 'A' ? query.slice(0, keepA) : text.slice(0, keepB);
        for (const id of src) {
          ids.push(id);
          typeIds.push(part.type);
        }
      }
      return { ids, typeIds };
    },
  };
}
