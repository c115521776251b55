/* t/selftest/run: a unit test binary that dies before its summary line. */
int main(void)
{
    return 3;
}
