/* t/selftest/run: a unit test binary whose checks pass but that exits
 * non-zero after its summary (as when a sanitizer objects at exit). */
#include <stdio.h>

int main(void)
{
    printf("1 passed, 0 failed\n");
    return 1;
}
