/*
 * Seed corpus for QEMU's generic-fuzz-qxl-vga / generic-fuzz-qxl targets.
 *
 *   qxl-seeds OUTDIR IO_INDEX RAM_INDEX RAM_ADDR
 *
 * generic-fuzz reads its input as a list of operations separated by
 * "FUZZ": an opcode byte, then the operation's argument structure.  An
 * I/O or memory operation names its target as (index, offset): the index
 * counts the fuzzable regions in the order of the address space's flat
 * view.  scripts/fuzz.sh finds which index is qxl's I/O BAR and which is
 * its RAM BAR (and where that BAR is mapped) by running a probe input with
 * QTEST_LOG, and passes them here.
 *
 * Each seed takes the device out of VGA mode the way drm/qxl does (a memory
 * slot over the RAM BAR, then a primary surface in it), then exercises one
 * thing: every asynchronous port, the synchronous ports, drawing commands
 * of several kinds, off-screen surfaces, the cursor ring, monitors config,
 * logging, resets and mode switches.  The fuzzer starts from there.
 *
 * The argument structures mirror those of tests/qtest/fuzz/generic_fuzz.c;
 * like the fuzzer, this program must be built for the host it runs on.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <spice/qxl_dev.h>

/* generic-fuzz opcodes */
enum { OP_IN, OP_OUT, OP_READ, OP_WRITE, OP_PCI_READ, OP_PCI_WRITE,
       OP_DISABLE_PCI, OP_ADD_DMA_PATTERN, OP_CLEAR_DMA_PATTERNS,
       OP_CLOCK_STEP };

struct arg_out {
    uint8_t size;               /* 0: byte */
    uint8_t base;
    uint16_t offset;
    uint32_t value;
};

struct arg_write {
    uint8_t size;               /* 3: quad */
    uint8_t base;
    uint32_t offset;
    uint64_t value;
};

/* Geometry of the fuzz configurations (QXL_FUZZ_SIZES): 16 MiB RAM BAR */
#define RAM_SIZE        (16u << 20)
#define RAM_HEADER      (RAM_SIZE - ((sizeof(QXLRam) + 4095) & ~4095u))
#define SLOT_ID         1       /* QXLRom.slots_start */
#define WIDTH           64
#define HEIGHT          48

static FILE *out;
static unsigned io_index, ram_index;
static uint64_t ram_addr;
static uint32_t alloc_next;
static uint64_t release_id;
static uint32_t cmd_prod, cursor_prod;

static void op(uint8_t code, const void *arg, size_t len)
{
    fputc(code, out);
    fwrite(arg, 1, len, out);
    fwrite("FUZZ", 1, 4, out);
}

static void io(uint8_t port, uint8_t val)
{
    struct arg_out a = { .size = 0, .base = io_index, .offset = port,
                         .value = val };

    op(OP_OUT, &a, sizeof(a));
}

static void clock_step(void)
{
    op(OP_CLOCK_STEP, NULL, 0);
}

/* Write @len bytes at @offset of the RAM BAR, eight at a time */
static void ram_write(uint32_t offset, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t i;

    for (i = 0; i < len; i += 8) {
        struct arg_write a = { .size = 3, .base = ram_index,
                               .offset = offset + i };

        memcpy(&a.value, p + i, len - i < 8 ? len - i : 8);
        op(OP_WRITE, &a, sizeof(a));
    }
}

#define ram_set(field, val) do {                                        \
        __typeof__(((QXLRam *)0)->field) v_ = (val);                    \
        ram_write(RAM_HEADER + offsetof(QXLRam, field), &v_, sizeof(v_)); \
    } while (0)

/* A QXLPHYSICAL in the memory slot over the RAM BAR, generation 0 */
static QXLPHYSICAL phys(uint32_t offset)
{
    return (uint64_t)SLOT_ID << 56 | offset;
}

static uint32_t alloc(size_t size)
{
    uint32_t offset = alloc_next;

    alloc_next = (offset + size + 63) & ~63u;
    return offset;
}

static QXLRect rect(int32_t l, int32_t t, int32_t r, int32_t b)
{
    QXLRect q = { .top = t, .left = l, .bottom = b, .right = r };

    return q;
}

/* VGA mode -> native mode, with synchronous or asynchronous ports */
static void native_start(int async)
{
    QXLSurfaceCreate sc = {
        .width = WIDTH, .height = HEIGHT, .stride = WIDTH * 4,
        .format = SPICE_SURFACE_FMT_32_xRGB, .mouse_mode = 1,
        .type = QXL_SURF_TYPE_PRIMARY, .mem = phys(0),
    };

    ram_set(mem_slot.mem_start, ram_addr);
    ram_set(mem_slot.mem_end, ram_addr + RAM_SIZE);
    io(async ? QXL_IO_MEMSLOT_ADD_ASYNC : QXL_IO_MEMSLOT_ADD, SLOT_ID);
    if (async) {
        clock_step();
    }
    ram_write(RAM_HEADER + offsetof(QXLRam, create_surface), &sc, sizeof(sc));
    io(async ? QXL_IO_CREATE_PRIMARY_ASYNC : QXL_IO_CREATE_PRIMARY, 0);
    if (async) {
        clock_step();
    }
}

/* QXL_IO_SET_MODE's slot 0: guest physical addresses, generation 0 */
static QXLPHYSICAL compat_phys(uint32_t offset)
{
    return ram_addr + offset;
}

static void push_command_at(QXLPHYSICAL data, uint32_t type)
{
    QXLCommand cmd = { .data = data, .type = type };
    uint32_t item = RAM_HEADER + offsetof(QXLRam, cmd_ring.items) +
                    (cmd_prod % QXL_COMMAND_RING_SIZE) *
                    sizeof(QXLCommandRing_ring_el);

    ram_write(item, &cmd, sizeof(cmd));
    ram_set(cmd_ring.prod, ++cmd_prod);
}

static void push_command(uint32_t offset, uint32_t type)
{
    push_command_at(phys(offset), type);
}

static void drawable_init(QXLDrawable *d, uint32_t surface, uint8_t type,
                          QXLRect bbox)
{
    int i;

    memset(d, 0, sizeof(*d));
    d->release_info.id = ++release_id;
    d->surface_id = surface;
    d->effect = QXL_EFFECT_OPAQUE;
    d->type = type;
    d->bbox = bbox;
    d->clip.type = SPICE_CLIP_TYPE_NONE;
    for (i = 0; i < 3; i++) {
        d->surfaces_dest[i] = -1;
    }
}

static void push_fill(uint32_t surface, QXLRect r, uint32_t color)
{
    QXLDrawable d;
    uint32_t offset = alloc(sizeof(d));

    drawable_init(&d, surface, QXL_DRAW_FILL, r);
    d.u.fill.brush.type = SPICE_BRUSH_TYPE_SOLID;
    d.u.fill.brush.u.color = color;
    d.u.fill.rop_descriptor = SPICE_ROPD_OP_PUT;
    ram_write(offset, &d, sizeof(d));
    push_command(offset, QXL_CMD_DRAW);
}

/* A QXL_DRAW_COPY of a @w x @h 32 bpp bitmap, its pixels in one chunk */
static void push_copy(uint32_t surface, uint32_t w, uint32_t h)
{
    QXLDrawable d;
    QXLImage img;
    struct {
        QXLDataChunk chunk;
        uint32_t px[16 * 16];
    } data;
    uint32_t doff = alloc(sizeof(data));
    uint32_t ioff = alloc(sizeof(img));
    uint32_t offset = alloc(sizeof(d));
    uint32_t i;

    memset(&data, 0, sizeof(data));
    data.chunk.data_size = w * h * 4;
    for (i = 0; i < w * h; i++) {
        data.px[i] = 0x10203 * i;
    }
    ram_write(doff, &data, sizeof(data.chunk) + w * h * 4);

    memset(&img, 0, sizeof(img));
    img.descriptor.id = ++release_id;
    img.descriptor.type = SPICE_IMAGE_TYPE_BITMAP;
    img.descriptor.width = w;
    img.descriptor.height = h;
    img.bitmap.format = SPICE_BITMAP_FMT_32BIT;
    img.bitmap.flags = SPICE_BITMAP_FLAGS_TOP_DOWN;
    img.bitmap.x = w;
    img.bitmap.y = h;
    img.bitmap.stride = w * 4;
    img.bitmap.data = phys(doff);
    ram_write(ioff, &img, sizeof(img));

    drawable_init(&d, surface, QXL_DRAW_COPY, rect(8, 8, 8 + w, 8 + h));
    d.u.copy.src_bitmap = phys(ioff);
    d.u.copy.src_area = rect(0, 0, w, h);
    d.u.copy.rop_descriptor = SPICE_ROPD_OP_PUT;
    ram_write(offset, &d, sizeof(d));
    push_command(offset, QXL_CMD_DRAW);
}

static void push_surface(uint32_t id, int create)
{
    QXLSurfaceCmd cmd;
    uint32_t offset = alloc(sizeof(cmd));

    memset(&cmd, 0, sizeof(cmd));
    cmd.release_info.id = ++release_id;
    cmd.surface_id = id;
    if (create) {
        cmd.type = QXL_SURFACE_CMD_CREATE;
        cmd.u.surface_create.format = SPICE_SURFACE_FMT_32_xRGB;
        cmd.u.surface_create.width = 16;
        cmd.u.surface_create.height = 16;
        cmd.u.surface_create.stride = 16 * 4;
        cmd.u.surface_create.data = phys(alloc(16 * 16 * 4));
    } else {
        cmd.type = QXL_SURFACE_CMD_DESTROY;
    }
    ram_write(offset, &cmd, sizeof(cmd));
    push_command(offset, QXL_CMD_SURFACE);
}

static void push_cursor_set(void)
{
    struct {
        QXLCursor cursor;
        uint32_t px[8 * 8];
    } c;
    QXLCursorCmd cmd;
    QXLCommand ring_cmd;
    uint32_t coff = alloc(sizeof(c));
    uint32_t offset = alloc(sizeof(cmd));
    uint32_t item = RAM_HEADER + offsetof(QXLRam, cursor_ring.items) +
                    (cursor_prod % QXL_CURSOR_RING_SIZE) *
                    sizeof(QXLCursorRing_ring_el);
    int i;

    memset(&c, 0, sizeof(c));
    c.cursor.header.unique = ++release_id;
    c.cursor.header.type = SPICE_CURSOR_TYPE_ALPHA;
    c.cursor.header.width = 8;
    c.cursor.header.height = 8;
    c.cursor.data_size = sizeof(c.px);
    c.cursor.chunk.data_size = sizeof(c.px);
    for (i = 0; i < 64; i++) {
        c.px[i] = 0xff000000 | (i * 0x040404);
    }
    ram_write(coff, &c, sizeof(c));

    memset(&cmd, 0, sizeof(cmd));
    cmd.release_info.id = ++release_id;
    cmd.type = QXL_CURSOR_SET;
    cmd.u.set.position.x = 10;
    cmd.u.set.position.y = 10;
    cmd.u.set.visible = 1;
    cmd.u.set.shape = phys(coff);
    ram_write(offset, &cmd, sizeof(cmd));

    ring_cmd.data = phys(offset);
    ring_cmd.type = QXL_CMD_CURSOR;
    ring_cmd.padding = 0;
    ram_write(item, &ring_cmd, sizeof(ring_cmd));
    ram_set(cursor_ring.prod, ++cursor_prod);
}

static void update_area(uint32_t surface, QXLRect r, int async)
{
    ram_set(update_surface, surface);
    ram_set(update_area, r);
    io(async ? QXL_IO_UPDATE_AREA_ASYNC : QXL_IO_UPDATE_AREA, 0);
}

static void monitors_config(void)
{
    struct SPICE_ATTR_PACKED {
        QXLMonitorsConfig config;
        QXLHead head[2];
    } mc;
    uint32_t offset = alloc(sizeof(mc));

    memset(&mc, 0, sizeof(mc));
    mc.config.count = 2;
    mc.config.max_allowed = 2;
    mc.head[0].width = WIDTH / 2;
    mc.head[0].height = HEIGHT;
    mc.head[1].id = 1;
    mc.head[1].width = WIDTH / 2;
    mc.head[1].height = HEIGHT;
    mc.head[1].x = WIDTH / 2;
    ram_write(offset, &mc, sizeof(mc));
    ram_set(monitors_config, phys(offset));
    io(QXL_IO_MONITORS_CONFIG_ASYNC, 0);
}

/* A QXLClipRects of one rectangle; returns its offset */
static uint32_t clip_rects(QXLRect r)
{
    struct SPICE_ATTR_PACKED {
        QXLClipRects clip;
        QXLRect rect;
    } c;
    uint32_t offset = alloc(sizeof(c));

    memset(&c, 0, sizeof(c));
    c.clip.num_rects = 1;
    c.clip.chunk.data_size = sizeof(c.rect);
    c.rect = r;
    ram_write(offset, &c, sizeof(c));
    return offset;
}

/* A fill as a QXL_IO_SET_MODE guest draws it, clipped and self-bitmapped */
static void push_compat_fill(QXLRect r, uint32_t color, int clip, int self)
{
    QXLCompatDrawable d;
    uint32_t offset;

    memset(&d, 0, sizeof(d));
    d.release_info.id = ++release_id;
    d.effect = QXL_EFFECT_OPAQUE;
    d.type = QXL_DRAW_FILL;
    d.bbox = r;
    if (clip) {
        d.clip.type = SPICE_CLIP_TYPE_RECTS;
        d.clip.data = compat_phys(clip_rects(r));
    }
    if (self) {
        d.bitmap_offset = 1;
        d.bitmap_area = r;
    }
    d.u.fill.brush.type = SPICE_BRUSH_TYPE_SOLID;
    d.u.fill.brush.u.color = color;
    d.u.fill.rop_descriptor = SPICE_ROPD_OP_PUT;
    offset = alloc(sizeof(d));
    ram_write(offset, &d, sizeof(d));
    push_command_at(compat_phys(offset), QXL_CMD_DRAW);
}

/* --- the seeds --- */

static void seed_async_start(void)
{
    native_start(1);
}

static void seed_fill_sync(void)
{
    native_start(0);
    push_fill(0, rect(0, 0, WIDTH, HEIGHT), 0x00ff00);
    push_fill(0, rect(4, 4, 20, 20), 0xff0000);
    io(QXL_IO_NOTIFY_CMD, 0);
    update_area(0, rect(0, 0, WIDTH, HEIGHT), 0);
}

static void seed_fill_async(void)
{
    native_start(0);
    push_fill(0, rect(0, 0, WIDTH, HEIGHT), 0x0000ff);
    io(QXL_IO_NOTIFY_CMD, 0);
    update_area(0, rect(0, 0, WIDTH, HEIGHT), 1);
    clock_step();
    io(QXL_IO_UPDATE_IRQ, 0);
}

static void seed_copy(void)
{
    native_start(0);
    push_copy(0, 16, 16);
    io(QXL_IO_NOTIFY_CMD, 0);
    update_area(0, rect(0, 0, WIDTH, HEIGHT), 0);
}

static void seed_surfaces(void)
{
    native_start(0);
    push_surface(1, 1);
    push_fill(1, rect(0, 0, 16, 16), 0x123456);
    push_surface(2, 1);
    io(QXL_IO_NOTIFY_CMD, 0);
    update_area(1, rect(0, 0, 16, 16), 0);
    io(QXL_IO_DESTROY_SURFACE_WAIT, 1);
    io(QXL_IO_DESTROY_SURFACE_ASYNC, 2);
    clock_step();
}

static void seed_surfaces_destroy_all(void)
{
    native_start(0);
    push_surface(3, 1);
    io(QXL_IO_NOTIFY_CMD, 0);
    io(QXL_IO_DESTROY_ALL_SURFACES_ASYNC, 0);
    clock_step();
    io(QXL_IO_DESTROY_ALL_SURFACES, 0);
}

static void seed_flush(void)
{
    native_start(0);
    push_fill(0, rect(0, 0, 8, 8), 0xabcdef);
    io(QXL_IO_NOTIFY_CMD, 0);
    io(QXL_IO_FLUSH_SURFACES_ASYNC, 0);
    clock_step();
    io(QXL_IO_FLUSH_RELEASE, 0);
    io(QXL_IO_NOTIFY_OOM, 0);
}

static void seed_cursor(void)
{
    native_start(0);
    push_cursor_set();
    io(QXL_IO_NOTIFY_CURSOR, 0);
    update_area(0, rect(0, 0, 1, 1), 0);
}

static void seed_monitors(void)
{
    native_start(0);
    monitors_config();
    clock_step();
}

static void seed_destroy_primary(void)
{
    native_start(0);
    io(QXL_IO_DESTROY_PRIMARY_ASYNC, 0);
    clock_step();
    native_start(1);
    io(QXL_IO_DESTROY_PRIMARY, 0);
    io(QXL_IO_MEMSLOT_DEL, SLOT_ID);
}

static void seed_log_mode_reset(void)
{
    static const char msg[] = "qxl-seeds: hello\n";

    native_start(0);
    ram_write(RAM_HEADER + offsetof(QXLRam, log_buf), msg, sizeof(msg));
    io(QXL_IO_LOG, 0);
    io(QXL_IO_SET_MODE, 0);
    io(QXL_IO_RESET, 0);
    native_start(0);
}

static void seed_busy(void)
{
    native_start(0);
    push_fill(0, rect(0, 0, WIDTH, HEIGHT), 0x777777);
    io(QXL_IO_NOTIFY_CMD, 0);
    update_area(0, rect(0, 0, WIDTH, HEIGHT), 1);
    io(QXL_IO_FLUSH_SURFACES_ASYNC, 0);         /* a second op: guest bug */
    io(QXL_IO_UPDATE_IRQ, 0);
    io(QXL_IO_RESET, 0);
}

/* QXL_IO_SET_MODE's compatibility mode (mode 1: 640x480, 32 bpp) */
static void seed_compat(void)
{
    io(QXL_IO_SET_MODE, 1);
    push_compat_fill(rect(0, 0, 64, 64), 0x0000ff, 0, 0);
    push_compat_fill(rect(8, 8, 24, 24), 0x00ff00, 1, 0);
    push_compat_fill(rect(16, 16, 48, 48), 0xff0000, 0, 1);
    io(QXL_IO_NOTIFY_CMD, 0);
    update_area(0, rect(0, 0, 64, 64), 0);
}

/* Native fills clipped by rectangles and with a self bitmap */
static void seed_clip_self_bitmap(void)
{
    QXLDrawable d;
    uint32_t offset;

    native_start(0);
    drawable_init(&d, 0, QXL_DRAW_FILL, rect(0, 0, 32, 32));
    d.clip.type = SPICE_CLIP_TYPE_RECTS;
    d.clip.data = phys(clip_rects(rect(4, 4, 28, 28)));
    d.self_bitmap = 1;
    d.self_bitmap_area = rect(0, 0, 32, 32);
    d.u.fill.brush.type = SPICE_BRUSH_TYPE_SOLID;
    d.u.fill.brush.u.color = 0x123456;
    d.u.fill.rop_descriptor = SPICE_ROPD_OP_PUT;
    offset = alloc(sizeof(d));
    ram_write(offset, &d, sizeof(d));
    push_command(offset, QXL_CMD_DRAW);
    io(QXL_IO_NOTIFY_CMD, 0);
    update_area(0, rect(0, 0, WIDTH, HEIGHT), 1);
    clock_step();
}

static const struct {
    const char *name;
    void (*fn)(void);
} seeds[] = {
    { "async-start", seed_async_start },
    { "fill-sync", seed_fill_sync },
    { "fill-async", seed_fill_async },
    { "copy", seed_copy },
    { "surfaces", seed_surfaces },
    { "surfaces-destroy-all", seed_surfaces_destroy_all },
    { "flush", seed_flush },
    { "cursor", seed_cursor },
    { "monitors", seed_monitors },
    { "destroy-primary", seed_destroy_primary },
    { "log-mode-reset", seed_log_mode_reset },
    { "busy", seed_busy },
    { "compat", seed_compat },
    { "clip-self-bitmap", seed_clip_self_bitmap },
};

int main(int argc, char **argv)
{
    size_t i;

    if (argc != 5) {
        fprintf(stderr, "usage: %s OUTDIR IO_INDEX RAM_INDEX RAM_ADDR\n",
                argv[0]);
        return 2;
    }
    io_index = strtoul(argv[2], NULL, 0);
    ram_index = strtoul(argv[3], NULL, 0);
    ram_addr = strtoull(argv[4], NULL, 0);

    for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/seed-%s", argv[1], seeds[i].name);
        out = fopen(path, "wb");
        if (!out) {
            fprintf(stderr, "%s: %s\n", path, strerror(errno));
            return 1;
        }
        /* Commands and resources go after the primary surface's pixels */
        alloc_next = WIDTH * HEIGHT * 4;
        release_id = 0;
        cmd_prod = cursor_prod = 0;
        seeds[i].fn();
        fclose(out);
    }
    return 0;
}
