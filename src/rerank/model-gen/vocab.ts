/** The special tokens, first in the vocabulary so their ids are the same for every size. */
export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;

// Common English and memory-chunk words get a token of their own, so generated test texts cost
// about as many tokens as they would with BERT's real 30k vocabulary.
const WORDS = `the of and to a in is it you that he was for on are with as i his they be at one have this from or had by
not word but what some we can out other were all there when up use your how said an each she which do their time if will
way about many then them write would like so these her long make thing see him two has look more day could go come did
number sound no most people my over know water than call first who may down side been now find any new work part take
get place made live where after back little only round man year came show every good me give our under name very through
just form sentence great think say help low line differ turn cause much mean before move right boy old too same tell does
set three want air well also play small end put home read hand port large spell add even land here must big high such
follow act why ask men change went light kind off need house picture try us again animal point mother world near build
self earth father head stand own page should country found answer school grow study still learn plant cover food sun four
between state keep eye never last let thought city tree cross farm hard start might story saw far sea draw left late run
don't while press close night real life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second book carry took science eat room
friend began idea fish mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song measure door product black short
numeral class wind question happen complete ship area half rock order fire south problem piece told knew pass since top
whole king space heard best hour better true during hundred five remember step early hold west ground interest reach fast
verb sing listen six table travel less morning ten simple several vowel toward war lay against pattern slow center love
person money serve appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry
dark machine note wait plan figure star box noun field rest correct able pound done beauty drive stood contain front teach
week final gave green oh quick develop ocean warm free minute strong special mind behind clear tail produce fact street inch
multiply nothing course stay wheel full force blue object decide surface deep moon island foot system busy test record boat
common gold possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought heat snow tire
bring yes distant fill east paint language among user memory prefers likes asked meeting project deadline email address
phone birthday coffee tea vegan allergic allergy dinner lunch breakfast flight hotel trip travel vacation budget invoice
report manager team client customer order account password payment subscription plan preference favorite schedule monday
tuesday wednesday thursday friday saturday sunday january february march april june july august september october november
december today tomorrow yesterday said wants needs using uses used working works lives lived moved bought sold called sent
received reminded remind reminder note notes task tasks doctor appointment gym run running training recipe cooking daughter
son wife husband partner sister brother office remote weekly daily monthly launch release review code bug deploy server
database api service`;

/** Letters, digits and punctuation: with their `##` forms, any text tokenizes without [UNK]. */
const CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';
const PUNCT = '.,;:!?\'"()-/&@#%$*+=<>[]_';

/**
 * A WordPiece vocabulary of exactly `size` entries: the specials, single characters, common
 * words, then two- and three-letter pieces (word-initial and `##`) until it is full.
 */
export function buildVocab(size: number): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (t: string) => {
    if (out.length < size && !seen.has(t)) {
      seen.add(t);
      out.push(t);
    }
  };
  SPECIAL_TOKENS.forEach(add);
  for (const c of PUNCT + CHARS) add(c);
  for (const c of CHARS) add(`##${c}`);
  for (const w of WORDS.split(/\s+/)) if (/^[a-z]+$/.test(w)) add(w);
  const letters = CHARS.slice(0, 26);
  for (const a of letters) for (const b of letters) add(`##${a}${b}`);
  for (const a of letters) for (const b of letters) add(`${a}${b}`);
  for (const a of letters) for (const b of letters) for (const c of letters) add(`##${a}${b}${c}`);
  for (const a of letters) for (const b of letters) for (const c of letters) add(`${a}${b}${c}`);
  for (let i = 0; out.length < size; i++) add(`[unused${i}]`);
  return out;
}

/**
 * A `tokenizer.json` as `transformers` saves it for a BERT cross-encoder: BERT normaliser and
 * pre-tokenizer, WordPiece, `[CLS] A [SEP] B [SEP]` with token type 1 on B, longest-first
 * truncation to `maxLength`, padding to the longest of a batch.
 */
export function tokenizerJson(vocab: readonly string[], maxLength: number): object {
  const id = (t: string) => vocab.indexOf(t);
  const special = (content: string) => ({ id: id(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: { direction: 'Right', max_length: maxLength, strategy: 'LongestFirst', stride: 0 },
    padding: { strategy: 'BatchLongest', direction: 'Right', pad_to_multiple_of: null, pad_id: id('[PAD]'), pad_type_id: 0, pad_token: '[PAD]' },
    added_tokens: SPECIAL_TOKENS.map(special),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [id('[CLS]')], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [id('[SEP]')], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((w, i) => [w, i])),
    },
  };
}
