/* t/selftest/run: a unit test binary with a failed check. */
#include <stdio.h>

int main(void)
{
    printf("2 passed, 1 failed\n");
    return 1;
}
