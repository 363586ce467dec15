/*
 * qxlmode: a real KMS mode change for the qxl test guest.
 *
 *   qxlmode WxH TL TR BL BR HOLD MESSAGE [DEVICE]
 *
 * Becomes DRM master on DEVICE (default /dev/dri/card0), creates a dumb
 * buffer of WxH xRGB8888, fills it with four quadrants (colours RRGGBB,
 * top-left, top-right, bottom-left, bottom-right), sets the mode WxH of the
 * first connected connector with it (on qxl: DESTROY_PRIMARY_ASYNC +
 * CREATE_PRIMARY_ASYNC), marks it dirty, prints MESSAGE on stdout, then
 * holds the mode for HOLD seconds or until a line arrives on stdin.  When it
 * exits, closing the device gives the display back to the fbdev emulation,
 * which restores its own mode (a second mode change).
 *
 * Fbdev (/dev/fb0, /sys/class/graphics/fb0/mode) cannot do this: Linux's
 * drm fbdev emulation accepts only modes that fit its framebuffer and never
 * pushes them to KMS.  Debian ships no DRM headers without libdrm-dev, so
 * the few stable UAPI structures used are declared here.
 *
 * Built static at image build time by scripts/guest-image.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <unistd.h>

/* include/uapi/drm/drm.h, drm_mode.h */
struct drm_mode_card_res {
    uint64_t fb_id_ptr, crtc_id_ptr, connector_id_ptr, encoder_id_ptr;
    uint32_t count_fbs, count_crtcs, count_connectors, count_encoders;
    uint32_t min_width, max_width, min_height, max_height;
};
struct drm_mode_modeinfo {
    uint32_t clock;
    uint16_t hdisplay, hsync_start, hsync_end, htotal, hskew;
    uint16_t vdisplay, vsync_start, vsync_end, vtotal, vscan;
    uint32_t vrefresh, flags, type;
    char name[32];
};
struct drm_mode_crtc {
    uint64_t set_connectors_ptr;
    uint32_t count_connectors, crtc_id, fb_id, x, y, gamma_size, mode_valid;
    struct drm_mode_modeinfo mode;
};
struct drm_mode_get_encoder {
    uint32_t encoder_id, encoder_type, crtc_id, possible_crtcs, possible_clones;
};
struct drm_mode_get_connector {
    uint64_t encoders_ptr, modes_ptr, props_ptr, prop_values_ptr;
    uint32_t count_modes, count_props, count_encoders, encoder_id;
    uint32_t connector_id, connector_type, connector_type_id, connection;
    uint32_t mm_width, mm_height, subpixel, pad;
};
struct drm_mode_fb_cmd {
    uint32_t fb_id, width, height, pitch, bpp, depth, handle;
};
struct drm_clip_rect {
    unsigned short x1, y1, x2, y2;
};
struct drm_mode_fb_dirty_cmd {
    uint32_t fb_id, flags, color, num_clips;
    uint64_t clips_ptr;
};
struct drm_mode_create_dumb {
    uint32_t height, width, bpp, flags, handle, pitch;
    uint64_t size;
};
struct drm_mode_map_dumb {
    uint32_t handle, pad;
    uint64_t offset;
};

_Static_assert(sizeof(struct drm_mode_card_res) == 64, "card_res");
_Static_assert(sizeof(struct drm_mode_modeinfo) == 68, "modeinfo");
_Static_assert(sizeof(struct drm_mode_crtc) == 104, "crtc");
_Static_assert(sizeof(struct drm_mode_get_encoder) == 20, "encoder");
_Static_assert(sizeof(struct drm_mode_get_connector) == 80, "connector");
_Static_assert(sizeof(struct drm_mode_fb_cmd) == 28, "fb_cmd");
_Static_assert(sizeof(struct drm_mode_fb_dirty_cmd) == 24, "fb_dirty");
_Static_assert(sizeof(struct drm_mode_create_dumb) == 32, "create_dumb");
_Static_assert(sizeof(struct drm_mode_map_dumb) == 16, "map_dumb");

#define DRM_IOCTL_SET_MASTER         _IO('d', 0x1e)
#define DRM_IOCTL_MODE_GETRESOURCES  _IOWR('d', 0xA0, struct drm_mode_card_res)
#define DRM_IOCTL_MODE_SETCRTC       _IOWR('d', 0xA2, struct drm_mode_crtc)
#define DRM_IOCTL_MODE_GETENCODER    _IOWR('d', 0xA6, struct drm_mode_get_encoder)
#define DRM_IOCTL_MODE_GETCONNECTOR  _IOWR('d', 0xA7, struct drm_mode_get_connector)
#define DRM_IOCTL_MODE_ADDFB         _IOWR('d', 0xAE, struct drm_mode_fb_cmd)
#define DRM_IOCTL_MODE_DIRTYFB       _IOWR('d', 0xB1, struct drm_mode_fb_dirty_cmd)
#define DRM_IOCTL_MODE_CREATE_DUMB   _IOWR('d', 0xB2, struct drm_mode_create_dumb)
#define DRM_IOCTL_MODE_MAP_DUMB      _IOWR('d', 0xB3, struct drm_mode_map_dumb)

#define PTR(p) ((uint64_t)(uintptr_t)(p))

static void fail(const char *what)
{
    printf("QXL-GUEST-ERROR: qxlmode: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int xioctl(int fd, unsigned long req, void *arg)
{
    int r;

    do {
        r = ioctl(fd, req, arg);
    } while (r == -1 && (errno == EINTR || errno == EAGAIN));
    return r;
}

static uint32_t *u32s(uint32_t n)
{
    uint32_t *p = calloc(n ? n : 1, sizeof(uint32_t));

    if (!p) {
        fail("calloc");
    }
    return p;
}

static uint32_t colour(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 16);

    if (*end || end - s != 6) {
        fprintf(stderr, "qxlmode: bad colour '%s' (want RRGGBB)\n", s);
        exit(2);
    }
    return (uint32_t)v;     /* 0x00RRGGBB = XRGB8888 */
}

int main(int argc, char **argv)
{
    unsigned w, h, i, j;
    uint32_t col[4];
    int hold, fd;
    const char *dev = argc > 8 ? argv[8] : "/dev/dri/card0";

    if (argc < 8 || sscanf(argv[1], "%ux%u", &w, &h) != 2 || !w || !h) {
        fprintf(stderr, "usage: qxlmode WxH TL TR BL BR HOLD MESSAGE [DEVICE]\n");
        return 2;
    }
    for (i = 0; i < 4; i++) {
        col[i] = colour(argv[2 + i]);
    }
    hold = atoi(argv[6]);

    fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fail(dev);
    }
    /* The first opener is master already; this only makes sure. */
    ioctl(fd, DRM_IOCTL_SET_MASTER, 0);

    struct drm_mode_card_res res = { 0 };
    if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res)) {
        fail("GETRESOURCES");
    }
    uint32_t *crtcs = u32s(res.count_crtcs);
    uint32_t *conns = u32s(res.count_connectors);
    res.count_fbs = 0;
    res.count_encoders = 0;
    res.crtc_id_ptr = PTR(crtcs);
    res.connector_id_ptr = PTR(conns);
    if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res)) {
        fail("GETRESOURCES");
    }

    struct drm_mode_get_connector conn;
    struct drm_mode_modeinfo *modes = NULL, mode;
    uint32_t *encs = NULL;
    int found = 0;
    for (i = 0; i < res.count_connectors && !found; i++) {
        memset(&conn, 0, sizeof(conn));
        conn.connector_id = conns[i];
        if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn)) {
            fail("GETCONNECTOR");
        }
        if (conn.connection != 1 || !conn.count_modes) {
            continue;
        }
        free(modes);
        free(encs);
        modes = calloc(conn.count_modes, sizeof(*modes));
        encs = u32s(conn.count_encoders);
        if (!modes) {
            fail("calloc");
        }
        conn.modes_ptr = PTR(modes);
        conn.encoders_ptr = PTR(encs);
        conn.count_props = 0;
        if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn)) {
            fail("GETCONNECTOR");
        }
        for (j = 0; j < conn.count_modes; j++) {
            if (modes[j].hdisplay == w && modes[j].vdisplay == h) {
                mode = modes[j];
                found = 1;
                break;
            }
        }
    }
    if (!found) {
        errno = ENOENT;
        printf("QXL-GUEST-ERROR: qxlmode: no connected connector has mode %ux%u\n", w, h);
        return 1;
    }

    /* The CRTC: the one the connector drives now, else one its encoders can use. */
    uint32_t crtc_id = 0;
    struct drm_mode_get_encoder enc;
    if (conn.encoder_id) {
        memset(&enc, 0, sizeof(enc));
        enc.encoder_id = conn.encoder_id;
        if (!xioctl(fd, DRM_IOCTL_MODE_GETENCODER, &enc)) {
            crtc_id = enc.crtc_id;
        }
    }
    for (i = 0; i < conn.count_encoders && !crtc_id; i++) {
        memset(&enc, 0, sizeof(enc));
        enc.encoder_id = encs[i];
        if (xioctl(fd, DRM_IOCTL_MODE_GETENCODER, &enc)) {
            continue;
        }
        for (j = 0; j < res.count_crtcs; j++) {
            if (enc.possible_crtcs & (1u << j)) {
                crtc_id = crtcs[j];
                break;
            }
        }
    }
    if (!crtc_id) {
        errno = ENOENT;
        fail("no CRTC for the connector");
    }

    struct drm_mode_create_dumb cd = { .width = w, .height = h, .bpp = 32 };
    if (xioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &cd)) {
        fail("CREATE_DUMB");
    }
    struct drm_mode_fb_cmd fb = {
        .width = w, .height = h, .pitch = cd.pitch,
        .bpp = 32, .depth = 24, .handle = cd.handle,
    };
    if (xioctl(fd, DRM_IOCTL_MODE_ADDFB, &fb)) {
        fail("ADDFB");
    }
    struct drm_mode_map_dumb md = { .handle = cd.handle };
    if (xioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &md)) {
        fail("MAP_DUMB");
    }
    uint8_t *map = mmap(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED,
                        fd, md.offset);
    if (map == MAP_FAILED) {
        fail("mmap");
    }
    for (j = 0; j < h; j++) {
        uint32_t *row = (uint32_t *)(map + (size_t)j * cd.pitch);
        for (i = 0; i < w; i++) {
            row[i] = col[(j >= h / 2) * 2 + (i >= w / 2)];
        }
    }

    struct drm_mode_crtc crtc = {
        .set_connectors_ptr = PTR(&conn.connector_id),
        .count_connectors = 1,
        .crtc_id = crtc_id,
        .fb_id = fb.fb_id,
        .mode_valid = 1,
        .mode = mode,
    };
    if (xioctl(fd, DRM_IOCTL_MODE_SETCRTC, &crtc)) {
        fail("SETCRTC");
    }
    struct drm_clip_rect clip = { 0, 0, w, h };
    struct drm_mode_fb_dirty_cmd dirty = {
        .fb_id = fb.fb_id, .num_clips = 1, .clips_ptr = PTR(&clip),
    };
    if (xioctl(fd, DRM_IOCTL_MODE_DIRTYFB, &dirty) && errno != ENOSYS) {
        fail("DIRTYFB");
    }

    printf("%s pitch=%u\n", argv[7], cd.pitch);
    fflush(stdout);

    if (hold > 0) {
        fd_set rd;
        struct timeval tv = { .tv_sec = hold };
        char buf[256];

        FD_ZERO(&rd);
        FD_SET(0, &rd);
        if (select(1, &rd, NULL, NULL, &tv) > 0) {
            if (read(0, buf, sizeof(buf)) < 0) {
                /* nothing to do: the hold is over either way */
            }
        }
    }
    munmap(map, cd.size);
    close(fd);     /* drops the fb; fbdev restores its mode on last close */
    return 0;
}
