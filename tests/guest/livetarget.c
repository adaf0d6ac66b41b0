/* The suspect host's test program for the `rescue live` scenario and `cargo xtask bench live`,
 * built static by `tests::live` and run inside the guest.
 *
 *   livetarget pattern SEED PAGES
 *       fills PAGES pages with the xorshift64 stream of SEED (tests::live::pattern makes the same
 *       bytes), locks them in RAM, reads /proc/self/pagemap for each page's physical address and
 *       prints one line
 *         LIVETARGET-READY pid=PID seed=SEED pages=PAGES phys=0xADDR,0xADDR,...
 *       then sleeps until killed (the pages stay mapped and locked).
 *   livetarget time CMD ARGS...
 *       runs CMD, waits for it and prints
 *         LIVETARGET-TIME status=STATUS wall=SECONDS maxrss_kib=KIB
 *       (wall clock from CLOCK_MONOTONIC, peak RSS from wait4's rusage of that child).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int pattern(uint64_t seed, long pages) {
    long page = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)pages * (size_t)page;
    uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("livetarget: mmap");
        return 1;
    }
    uint64_t x = seed ? seed : 1;
    for (size_t i = 0; i < len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(mem + i, &x, 8);
    }
    if (mlock(mem, len) != 0) {
        perror("livetarget: mlock");
        return 1;
    }
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) {
        perror("livetarget: /proc/self/pagemap");
        return 1;
    }
    printf("LIVETARGET-READY pid=%d seed=%" PRIu64 " pages=%ld phys=", (int)getpid(), seed, pages);
    for (long p = 0; p < pages; p++) {
        uint64_t entry = 0;
        off_t at = (off_t)(((uintptr_t)mem / (uintptr_t)page) + (uintptr_t)p) * 8;
        if (pread(fd, &entry, 8, at) != 8 || !(entry >> 63) || !(entry & ((1ULL << 55) - 1))) {
            fprintf(stderr, "livetarget: page %ld is not present or its PFN is hidden (not root?)\n", p);
            return 1;
        }
        uint64_t pfn = entry & ((1ULL << 55) - 1);
        printf("%s0x%" PRIx64, p ? "," : "", pfn * (uint64_t)page);
    }
    printf("\n");
    fflush(stdout);
    close(fd);
    for (;;)
        pause();
}

static int timed(char **argv) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid < 0) {
        perror("livetarget: fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[0], argv);
        perror("livetarget: exec");
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("livetarget: wait4");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double wall = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("LIVETARGET-TIME status=%d wall=%.3f maxrss_kib=%ld user=%.3f sys=%.3f\n", code, wall,
           ru.ru_maxrss, user, sys);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "pattern") == 0)
        return pattern(strtoull(argv[2], NULL, 0), strtol(argv[3], NULL, 0));
    if (argc >= 3 && strcmp(argv[1], "time") == 0)
        return timed(argv + 2);
    fprintf(stderr, "usage: livetarget pattern SEED PAGES | livetarget time CMD [ARGS...]\n");
    return 2;
}
