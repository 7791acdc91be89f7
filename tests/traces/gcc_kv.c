/* Input of tests/traces/gcc-O2 (cc1 -O2): a small self-contained key-value
   store: open-addressing hash table, insertion sort of keys, a checksum. */
typedef unsigned long u64;
typedef unsigned int u32;
struct entry { u64 key; u64 value; u32 used; };
struct table { struct entry *slots; u32 cap; u32 size; };
static u64 mix(u64 x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}
int put(struct table *t, u64 key, u64 value) {
  if (t->size * 4 >= t->cap * 3) return -1;
  for (u32 i = (u32)mix(key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
    struct entry *e = &t->slots[i];
    if (!e->used) { e->used = 1; e->key = key; e->value = value; t->size++; return 0; }
    if (e->key == key) { e->value = value; return 1; }
  }
}
u64 *get(struct table *t, u64 key) {
  for (u32 i = (u32)mix(key) & (t->cap - 1), n = 0; n < t->cap; i = (i + 1) & (t->cap - 1), n++) {
    struct entry *e = &t->slots[i];
    if (!e->used) return 0;
    if (e->key == key) return &e->value;
  }
  return 0;
}
static void sort(u64 *a, u32 n) {
  for (u32 i = 1; i < n; i++) {
    u64 v = a[i]; u32 j = i;
    while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
    a[j] = v;
  }
}
u64 checksum(struct table *t, u64 *keys) {
  u32 n = 0;
  for (u32 i = 0; i < t->cap; i++) if (t->slots[i].used) keys[n++] = t->slots[i].key;
  sort(keys, n);
  u64 h = 0;
  for (u32 i = 0; i < n; i++) { u64 *v = get(t, keys[i]); h = mix(h ^ keys[i] ^ (v ? *v : 0)); }
  return h;
}
